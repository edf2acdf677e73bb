"""The arguments of the Serve application, one pydantic model shared by the Python
builder, the Serve config YAML and the RayService manifest's ``serveConfigV2``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_serializer,
    field_validator,
    model_validator,
)

from core.settings import AuthSettings, SmtpSettings, TierLimits, default_tier_table
from serve.portfolio.config import WalletSyncArgs


class Autoscaling(BaseModel):
    """A deployment's ``autoscaling_config`` (Ray Serve's own keys and meaning)."""

    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(default=1, ge=0,
                              description="0 lets an idle deployment scale to zero; its "
                                          "next request waits for a replica to start.")
    max_replicas: int = Field(default=2, ge=1)
    target_ongoing_requests: float = Field(default=2.0, gt=0)
    upscale_delay_s: float = Field(default=10.0, ge=0)
    downscale_delay_s: float = Field(default=120.0, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) is above max_replicas "
                             f"({self.max_replicas})")
        return self


class DeploymentArgs(BaseModel):
    """What Ray schedules a model deployment by: logical CPUs per replica (fractional on
    purpose, see ``serve/app.py``), requests one replica takes at once, autoscaling."""

    model_config = ConfigDict(extra="forbid")

    num_cpus: float = Field(default=0.5, gt=0, le=16, description="Logical CPUs per replica.")
    max_ongoing_requests: int = Field(default=8, ge=1)
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)

    def deployment_options(self) -> dict[str, Any]:
        """Keyword arguments of ``Deployment.options``."""
        return {"ray_actor_options": {"num_cpus": self.num_cpus},
                "max_ongoing_requests": self.max_ongoing_requests,
                "autoscaling_config": self.autoscaling.model_dump()}


class SentimentArgs(DeploymentArgs):
    """Builder arguments of the sentiment deployment (``serve/sentiment_deployment.py``)."""

    model_dir: Path | None = None
    batch_size: int = Field(default=32, ge=1, le=1024)
    max_length: int = Field(default=128, ge=8, le=512)
    num_threads: int = Field(default=1, ge=1, description="Torch threads per replica.")
    autoscaling: Autoscaling = Field(default_factory=lambda: Autoscaling(
        min_replicas=1, max_replicas=2, target_ongoing_requests=4, downscale_delay_s=120))


class PredictionArgs(DeploymentArgs):
    """The prediction deployment (``serve/prediction_deployment.py``): forecasts the
    hourly job did not store (a horizon a tier allows but the job does not produce, an
    asset it has not reached), made the job's way, stored and cached like its own."""

    max_ongoing_requests: int = Field(default=8, ge=1)
    autoscaling: Autoscaling = Field(default_factory=lambda: Autoscaling(
        min_replicas=1, max_replicas=2, target_ongoing_requests=2, upscale_delay_s=5,
        downscale_delay_s=300))
    min_days: int = Field(default=14, ge=8, description="Daily bars needed before forecasting.")
    cache_ttl_s: int = Field(default=3600, ge=1, description="TTL of the cached forecast.")
    max_age_s: float = Field(
        default=7200.0, gt=0,
        description="A stored prediction older than this is made afresh (the hourly job "
                    "refreshes its own horizons well within it).")
    calibrate: bool = Field(
        default=True, description="Calibrate (and store the calibration) where none is "
                                  "fresh; false: the random-walk band, marked uncalibrated.")
    calibration_max_age_s: float = Field(default=86400.0, gt=0)
    use_lstm: bool = Field(default=True, description="Join the promoted LSTM where one exists.")
    timeout_s: float = Field(default=60.0, gt=0,
                             description="How long the API waits for one forecast.")


class RiskArgs(DeploymentArgs):
    """The risk deployment (``serve/risk_deployment.py``): an asset's composite score
    computed on demand (none stored yet, or an admin's refresh), stored and cached like
    the scheduler's."""

    num_cpus: float = Field(default=0.25, gt=0, le=16, description="Logical CPUs per replica.")
    max_ongoing_requests: int = Field(default=4, ge=1)
    autoscaling: Autoscaling = Field(default_factory=lambda: Autoscaling(
        min_replicas=0, max_replicas=1, target_ongoing_requests=1, upscale_delay_s=0,
        downscale_delay_s=600))
    lake_root: str | None = Field(
        default=None, description="The lake whose silver news is read as evidence; null: "
                                  "scored without news (the explanation says so).")
    news_lookback_days: int = Field(default=365, ge=1)
    cache_ttl_s: int = Field(default=3600, ge=1)
    timeout_s: float = Field(default=60.0, gt=0,
                             description="How long the API waits for one score.")


class AppArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    database_url: str = Field(description="PostgreSQL DSN the API reads gold from.")
    redis_url: str = Field(description="Redis URL: cache, heartbeats and the ticks channel.")
    allowed_origins: list[str] = Field(default_factory=list,
                                       description="Origins a browser WebSocket may come from.")
    max_ongoing_requests: int = Field(default=2000, ge=1)
    ingress_cpus: float = Field(default=0.25, gt=0)
    ingress_autoscaling: Autoscaling = Field(
        default_factory=lambda: Autoscaling(min_replicas=2, max_replicas=3,
                                            target_ongoing_requests=500),
        description="The ingress's replicas. Two at least: HAProxy spreads requests and "
                    "WebSockets over them, one keeps serving while the other restarts, and "
                    "on 2 cores two event loops serve about a fifth more requests than one "
                    "(bench/api.py). Every open WebSocket holds an ongoing request for its "
                    "whole life, so the target is high and more replicas come only under "
                    "many sockets.")
    ingress_access_log: bool = Field(
        default=False,
        description="Serve's access log line per request in the ingress replicas' logs; off: "
                    "it costs about 5 % of a cached read's CPU, and HAProxy and /metrics "
                    "count requests by route and status already.")
    near_cache_ttl_s: float = Field(
        default=1.0, ge=0, le=60,
        description="Seconds a replica keeps a hot prediction it read from the Redis cache "
                    "before asking Redis again (0: always ask). The hourly job replaces them; "
                    "under load the in-process copy spares a Redis round trip.")
    prediction_horizons: list[int] = Field(default_factory=lambda: [1, 7, 30])
    sentiment: SentimentArgs | None = Field(
        default_factory=SentimentArgs,
        description="The sentiment deployment behind POST /sentiment; null leaves it out.")
    prediction: PredictionArgs | None = Field(
        default_factory=PredictionArgs,
        description="The prediction deployment behind GET /predictions misses; null leaves "
                    "it out (a miss is then a 404).")
    risk: RiskArgs | None = Field(
        default_factory=RiskArgs,
        description="The risk deployment behind GET /risk misses and POST "
                    "/risk/{asset_id}/refresh; null leaves it out.")
    auth: AuthSettings = Field(
        default_factory=AuthSettings,
        description="Tokens, throttling and password hashing; a null jwt_secret is read from "
                    "the replica's RWA_AUTH__JWT_SECRET.")
    tiers: dict[str, TierLimits] = Field(
        default_factory=default_tier_table,
        description="Tier name → request limit and features; must hold 'free', the tier of "
                    "new accounts and of anonymous clients.")
    smtp: SmtpSettings | None = Field(
        default=None, description="Mail server for verification emails; null: not sent. A "
                                  "null password is read from the replica's RWA_SMTP__PASSWORD.")

    wallet_sync: WalletSyncArgs = Field(
        default_factory=WalletSyncArgs,
        description="JSON-RPC endpoints and limits of POST /portfolio/sync-wallet.")

    @field_validator("tiers")
    @classmethod
    def _has_free(cls, tiers: dict[str, TierLimits]) -> dict[str, TierLimits]:
        if "free" not in tiers:
            raise ValueError("tiers must include 'free' (new accounts and anonymous clients)")
        return tiers

    @field_serializer("auth", "smtp", mode="wrap", when_used="json")
    def _keep_secrets(self, value: Any, handler: SerializerFunctionWrapHandler) -> Any:
        # The JSON form is what crosses Ray to the replica (``build_app``), so secrets stay
        # readable there; everywhere else they print as SecretStr's stars.
        data = handler(value)
        for name in ("jwt_secret", "totp_key", "password"):
            secret = getattr(value, name, None)
            if secret is not None:
                data[name] = secret.get_secret_value()
        return data
