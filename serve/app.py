"""The Ray Serve application: the FastAPI ingress as an autoscaled deployment, and the
model deployments it calls through handles: prediction (forecasts the hourly job did
not store), risk (scores not stored yet, admins' refreshes) and sentiment
(``POST /sentiment``).

``build_app`` is the import path used by ``rwa up``, the Serve config YAML and the
RayService manifest (``serve.app:build_app``) with the same ``AppArgs``; each model
deployment's CPUs, concurrency and ``autoscaling_config`` are in its part of the args
(``prediction``, ``risk``, ``sentiment``; null leaves it out).

CPU budget (logical CPUs, which Ray schedules by; the defaults, per replica × replicas
from the floor to the autoscaling ceiling):

=============  ========  ========  =============================================
deployment     per rep.  replicas  why
=============  ========  ========  =============================================
api (ingress)  0.25      2–3       async I/O: cache and database reads
prediction     0.5       1–2       one ARIMA/ETS fit at a time; misses only
risk           0.25      0–1       rarely needed: scales to zero after 10 min
sentiment      0.5       1–2       torch on one thread
=============  ========  ========  =============================================

That is 1.5 logical CPUs idle and 3 at the ceilings. On a 2-core machine the
platform's actors take about 2.5 and Spark 0.5 more out of the 8 that ``rwa up`` gives
Ray (``RWA_RAY__NUM_CPUS``), which leaves 2 or more for Ray Train/Tune jobs at the
ceilings. Only the ingress and a busy model replica use a real core; a deployment
min_replicas of 1 keeps a warm replica (memory, no CPU) so that a miss costs the fit
and not a replica's start as well, which the risk deployment, needed perhaps once an
hour, is spared.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application

from serve.args import AppArgs
from serve.serve_env import INGRESS_ENV

@serve.ingress()
class ApiIngress:
    """Builds the FastAPI app inside the replica, so nothing unpicklable crosses Ray."""

    def __init__(self, args: dict[str, Any], sentiment: Any = None, prediction: Any = None,
                 risk: Any = None) -> None:
        self.args = AppArgs.model_validate(args)
        # DeploymentHandles to the model deployments, or None where one is left out.
        self.sentiment = sentiment
        self.prediction = prediction
        self.risk = risk

    def __serve_build_asgi_app__(self):
        from serve.api import create_api

        return create_api(self.args, sentiment=self.sentiment, prediction=self.prediction,
                          risk=self.risk)


def build_app(args: dict[str, Any]) -> Application:
    parsed = AppArgs.model_validate(args)
    deployment = serve.deployment(
        ApiIngress,
        name="api",
        ray_actor_options={"num_cpus": parsed.ingress_cpus,
                           "runtime_env": {"env_vars": INGRESS_ENV}},
        # Serve's per-request access log line costs about 5 % of a cached read's CPU;
        # HAProxy and /metrics count requests already (AppArgs.ingress_access_log).
        logging_config={"enable_access_log": parsed.ingress_access_log},
        # Every open WebSocket holds one slot for its whole life.
        max_ongoing_requests=parsed.max_ongoing_requests,
        autoscaling_config=parsed.ingress_autoscaling.model_dump(),
    )
    handles: dict[str, Application] = {}
    if parsed.sentiment is not None:
        from serve.sentiment_deployment import build_sentiment

        handles["sentiment"] = build_sentiment(parsed.sentiment)
    if parsed.prediction is not None:
        from serve.prediction_deployment import build_prediction

        handles["prediction"] = build_prediction(
            parsed.prediction, database_url=parsed.database_url, redis_url=parsed.redis_url,
            job_horizons=parsed.prediction_horizons)
    if parsed.risk is not None:
        from serve.risk_deployment import build_risk

        handles["risk"] = build_risk(parsed.risk, database_url=parsed.database_url,
                                     redis_url=parsed.redis_url)
    return deployment.bind(parsed.model_dump(mode="json"), **handles)
