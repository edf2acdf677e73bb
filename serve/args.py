"""The arguments of the Serve application, one pydantic model shared by the Python
builder, the Serve config YAML and the RayService manifest's ``serveConfigV2``."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


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
