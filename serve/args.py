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
)

from core.settings import AuthSettings, SmtpSettings, TierLimits, default_tier_table
from serve.portfolio.config import WalletSyncArgs


class SentimentArgs(BaseModel):
    """Builder arguments of the sentiment deployment (``serve/sentiment_deployment.py``)."""

    model_config = ConfigDict(extra="forbid")

    model_dir: Path | None = None
    batch_size: int = Field(default=32, ge=1, le=1024)
    max_length: int = Field(default=128, ge=8, le=512)
    num_threads: int = Field(default=1, ge=1, description="Torch threads per replica.")


class AppArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    database_url: str = Field(description="PostgreSQL DSN the API reads gold from.")
    redis_url: str = Field(description="Redis URL: cache, heartbeats and the ticks channel.")
    allowed_origins: list[str] = Field(default_factory=list,
                                       description="Origins a browser WebSocket may come from.")
    max_ongoing_requests: int = Field(default=2000, ge=1)
    ingress_cpus: float = Field(default=0.25, gt=0)
    prediction_horizons: list[int] = Field(default_factory=lambda: [1, 7, 30])
    sentiment: SentimentArgs | None = Field(
        default_factory=SentimentArgs,
        description="The sentiment deployment behind POST /sentiment; null leaves it out.")
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
        for name in ("jwt_secret", "password"):
            secret = getattr(value, name, None)
            if secret is not None:
                data[name] = secret.get_secret_value()
        return data
