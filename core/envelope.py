"""The message envelope every raw topic carries, and its JSON codec.

One shape for all topics: who produced it (``source``), what it is (``kind``), which
asset, when it happened (``event_time``) and when we saw it (``ingest_time``), the
schema version, and a kind-specific ``payload`` validated by its own model.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.errors import InvalidMessage

SCHEMA_VERSION = 1

Kind = Literal["bar", "tick", "onchain", "macro", "news"]


class BarPayload(BaseModel):
    """An OHLCV bar over ``interval``; ``nav`` only for NAV-pinned assets."""

    model_config = ConfigDict(extra="forbid")

    open: float = Field(gt=0)
    high: float = Field(gt=0)
    low: float = Field(gt=0)
    close: float = Field(gt=0)
    volume: float = Field(ge=0)
    interval: Literal["1m", "1h", "1d"] = "1h"
    nav: float | None = Field(default=None, gt=0)


class TickPayload(BaseModel):
    """One trade/quote: the last price and the volume traded since the previous tick."""

    model_config = ConfigDict(extra="forbid")

    price: float = Field(gt=0)
    volume: float = Field(ge=0)
    nav: float | None = Field(default=None, gt=0)


class OnchainPayload(BaseModel):
    """On-chain and RWA metadata metrics of one asset at one time; any subset may be known."""

    model_config = ConfigDict(extra="forbid")

    holder_count: int | None = Field(default=None, ge=0)
    transfer_volume: float | None = Field(default=None, ge=0)
    transfer_count: int | None = Field(default=None, ge=0)
    dex_liquidity: float | None = Field(default=None, ge=0)
    exchange_inflow: float | None = Field(default=None, ge=0)
    exchange_outflow: float | None = Field(default=None, ge=0)
    nav: float | None = Field(default=None, gt=0)
    apy: float | None = Field(default=None, ge=-100, le=1000)
    tvl_usd: float | None = Field(default=None, ge=0)
    chain: str | None = None


class MacroPayload(BaseModel):
    """One observation of a macro series (policy rate, CPI, a bond yield, GDP…)."""

    model_config = ConfigDict(extra="forbid")

    series: str = Field(min_length=1, max_length=80, description="e.g. 'US.FED_FUNDS'")
    value: float
    unit: str | None = Field(default=None, max_length=40)
    country: str | None = Field(default=None, max_length=60)
    frequency: str | None = Field(default=None, max_length=10)


class NewsPayload(BaseModel):
    """A news article or headline, with the assets and issuers it mentions."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=1000)
    body: str | None = Field(default=None, max_length=100_000)
    url: str | None = Field(default=None, max_length=2000)
    outlet: str | None = Field(default=None, max_length=200)
    lang: str = Field(default="en", max_length=8)
    assets: list[str] = Field(default_factory=list)
    issuers: list[str] = Field(default_factory=list)


PAYLOAD_MODELS: dict[str, type[BaseModel]] = {
    "bar": BarPayload,
    "tick": TickPayload,
    "onchain": OnchainPayload,
    "macro": MacroPayload,
    "news": NewsPayload,
}

#: Kinds whose envelope must name an asset; macro series and some news need none.
ASSET_REQUIRED: frozenset[str] = frozenset({"bar", "tick", "onchain"})


class Envelope(BaseModel):
    """A message on a raw topic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    source: str = Field(min_length=1, max_length=64)
    kind: Kind
    asset_id: str | None = Field(default=None, min_length=1, max_length=64)
    event_time: datetime
    ingest_time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    payload: dict[str, Any]

    @field_validator("event_time", "ingest_time")
    @classmethod
    def _aware_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("timestamps must carry a timezone")
        return value.astimezone(UTC)

    def model_post_init(self, __context: Any) -> None:
        if self.asset_id is None and self.kind in ASSET_REQUIRED:
            raise ValueError(f"asset_id is required for kind {self.kind!r}")
        try:
            PAYLOAD_MODELS[self.kind].model_validate(self.payload)
        except ValidationError as e:
            raise ValueError(f"payload invalid for kind {self.kind!r}: {_first_error(e)}") from e

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ())) or "message"
    return f"{loc}: {err.get('msg', 'invalid')}"


def decode(raw: bytes | str) -> Envelope:
    """Parse and validate one raw message.

    Raises:
        InvalidMessage: with a one-line reason naming the broken rule.
    """
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidMessage(f"not JSON: {e}") from e
    if not isinstance(data, dict):
        raise InvalidMessage("not a JSON object")
    try:
        return Envelope.model_validate(data)
    except ValidationError as e:
        raise InvalidMessage(_first_error(e)) from e


def make(
    *,
    source: str,
    kind: Kind,
    asset_id: str | None,
    event_time: datetime,
    payload: dict[str, Any],
) -> Envelope:
    """Build a validated envelope stamped with the current ingest time."""
    return Envelope(
        source=source, kind=kind, asset_id=asset_id, event_time=event_time, payload=payload
    )


def json_schema() -> dict[str, Any]:
    """The envelope contract as JSON Schema: the common fields, and per kind its payload.

    Committed as ``core/schemas/envelope.schema.json`` for producers outside Python; a
    test keeps the file equal to this function's output.
    """
    base = Envelope.model_json_schema()
    variants = []
    for kind, model in PAYLOAD_MODELS.items():
        props: dict[str, Any] = {"kind": {"const": kind}, "payload": model.model_json_schema()}
        variant: dict[str, Any] = {"properties": props}
        if kind in ASSET_REQUIRED:
            variant["required"] = ["asset_id"]
            props["asset_id"] = {"type": "string", "minLength": 1, "maxLength": 64}
        variants.append(variant)
    base["oneOf"] = variants
    base["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    base["$id"] = "https://rwaprime.example/schemas/envelope.schema.json"
    base["title"] = "RWA Prime message envelope"
    return base
