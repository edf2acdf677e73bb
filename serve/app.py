"""The Ray Serve application: the FastAPI ingress as an autoscaled deployment, and the
sentiment scorer it calls through a handle for ``POST /sentiment``.

``build_app`` is the import path used by ``rwa up``, the Serve config YAML and the
RayService manifest (``serve.app:build_app``) with the same ``AppArgs``.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application

from serve.args import AppArgs


@serve.ingress()
class ApiIngress:
    """Builds the FastAPI app inside the replica, so nothing unpicklable crosses Ray."""

    def __init__(self, args: dict[str, Any], sentiment: Any = None) -> None:
        self.args = AppArgs.model_validate(args)
        self.sentiment = sentiment  # a DeploymentHandle to the sentiment scorer, or None

    def __serve_build_asgi_app__(self):
        from serve.api import create_api

        return create_api(self.args, sentiment=self.sentiment)


def build_app(args: dict[str, Any]) -> Application:
    parsed = AppArgs.model_validate(args)
    deployment = serve.deployment(
        ApiIngress,
        name="api",
        ray_actor_options={"num_cpus": parsed.ingress_cpus},
        # Every open WebSocket holds one slot for its whole life.
        max_ongoing_requests=parsed.max_ongoing_requests,
        autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 500},
    )
    if parsed.sentiment is None:
        return deployment.bind(parsed.model_dump(mode="json"))
    from serve.sentiment_deployment import build_sentiment

    return deployment.bind(parsed.model_dump(mode="json"), build_sentiment(parsed.sentiment))
