"""The sentiment model as a Ray Serve deployment.

:class:`SentimentScorer` is a thin shell over :class:`training.sentiment.SentimentModel`:
it loads the model once per replica and scores lists of texts. The ingress (or any
other deployment) calls it through a handle::

    handle = serve.get_deployment_handle("sentiment", app_name=...)
    rows = await handle.score.remote(["Gold hits a record high"])

CPU budget: each replica asks for 0.5 logical CPU and runs torch on one thread, so
two replicas (the autoscaling ceiling) fit the platform's budget (``serve/app.py``)
and leave a 2-core machine's other core to the rest; :class:`serve.args.SentimentArgs`
holds these figures, so the Serve config can change them. Scoring runs in a worker
thread so a replica's event loop keeps answering health checks during a long batch.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ray import serve
from ray.serve import Application

from serve.args import SentimentArgs

#: The deployment's options when its args leave them alone.
DEFAULTS = SentimentArgs()
#: Logical CPUs per replica; fractional on purpose (see the module docstring).
REPLICA_CPUS = DEFAULTS.num_cpus
#: Largest list one request may hold; bigger lists belong in a batch job.
MAX_TEXTS = 256


@serve.deployment(name="sentiment", health_check_period_s=10, **DEFAULTS.deployment_options())
class SentimentScorer:
    """Scores texts with the model named by :class:`SentimentArgs`."""

    def __init__(self, args: dict[str, Any] | None = None) -> None:
        from training.sentiment import SentimentModel

        self.args = SentimentArgs.model_validate(args or {})
        self.model = SentimentModel.load(self.args.model_dir, batch_size=self.args.batch_size,
                                         max_length=self.args.max_length,
                                         num_threads=self.args.num_threads)

    def score_sync(self, texts: list[str]) -> list[dict[str, Any]]:
        """``[{"text", "label", "score"}, …]`` for ``texts``.

        Raises:
            ValueError: no texts, too many, or an empty one.
            TypeError: a text that is not a string.
        """
        if not texts:
            raise ValueError("no texts to score")
        if len(texts) > MAX_TEXTS:
            raise ValueError(f"at most {MAX_TEXTS} texts per request, got {len(texts)}")
        return [s.as_dict() for s in self.model.score(texts)]

    async def score(self, texts: list[str]) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.score_sync, texts)

    async def __call__(self, texts: list[str]) -> list[dict[str, Any]]:
        return await self.score(texts)

    def info(self) -> dict[str, str]:
        return {"model_dir": str(self.model.model_dir), "kind": self.model.kind,
                "version": self.model.version, "device": str(self.model.device)}


def build_sentiment(args: dict[str, Any] | SentimentArgs | None = None) -> Application:
    """The deployment bound to validated arguments, ready to compose into the app."""
    parsed = SentimentArgs.model_validate(args or {}) if not isinstance(args, SentimentArgs) \
        else args
    return SentimentScorer.options(**parsed.deployment_options()).bind(
        parsed.model_dump(mode="json"))
