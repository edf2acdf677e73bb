"""The arguments of the Serve application, one pydantic model shared by the Python
builder, the Serve config YAML and the RayService manifest's ``serveConfigV2``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AppArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    database_url: str = Field(description="PostgreSQL DSN the API reads gold from.")
    redis_url: str = Field(description="Redis URL: cache, heartbeats and the ticks channel.")
    allowed_origins: list[str] = Field(default_factory=list,
                                       description="Origins a browser WebSocket may come from.")
    max_ongoing_requests: int = Field(default=2000, ge=1)
    ingress_cpus: float = Field(default=0.25, gt=0)
    prediction_horizons: list[int] = Field(default_factory=lambda: [1, 7, 30])
