"""The message envelope every raw topic carries, and its JSON codec.

One shape for all topics: who produced it (``source``), what it is (``kind``), which
asset, when it happened (``event_time``) and when we saw it (``ingest_time``), the
schema version, and a kind-specific ``payload`` validated by its own model.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NotRequired, Required

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

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


def _plain_dict_form(model: type[BaseModel]) -> TypeAdapter[Any]:
    """A validator of ``model``'s fields, constraints and ``extra`` rule that returns a
    plain dict: no defaults filled in and no model instance built, which is most of
    pydantic's cost per message. Field and model validators are not carried over, so
    callers apply those themselves (see ``decode_fields``)."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        ann = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
        fields[name] = Required[ann] if info.is_required() else NotRequired[ann]
    form = TypedDict(f"{model.__name__}Fields", fields)  # type: ignore[operator]
    config = ConfigDict()
    if "extra" in model.model_config:
        config["extra"] = model.model_config["extra"]
    form.__pydantic_config__ = config  # type: ignore[attr-defined]
    return TypeAdapter(form)


def _has_own_rules(model: type[BaseModel]) -> bool:
    decorators = model.__pydantic_decorators__
    return bool(decorators.validators or decorators.field_validators or decorators.root_validators
                or decorators.model_validators
                or model.model_post_init is not BaseModel.model_post_init)


# The validators themselves rather than TypeAdapter's methods: a call less per message.
_ENVELOPE_FIELDS = _plain_dict_form(Envelope).validator
#: Per kind, validates a payload dict; a payload model with rules of its own is used as is.
_PAYLOAD_CHECKS: dict[str, Any] = {
    kind: model.model_validate if _has_own_rules(model)
    else _plain_dict_form(model).validator.validate_python
    for kind, model in PAYLOAD_MODELS.items()
}


class _Unsure(Exception):
    """The fast path could not accept a message; ``decode`` decides, and says why."""


def decode_fields(raw: bytes | str) -> dict[str, Any]:
    """Validate one raw message like ``decode``, returning its fields as a plain dict.

    Same rules and the same reasons as ``decode`` at about a quarter of the cost: the
    JSON is parsed and the envelope's fields checked in one pass inside pydantic-core
    into plain dicts, the payload checked against its kind's rules, and the envelope's
    own rules (timezones, asset required) applied here. Whatever this fast path does
    not accept goes through ``decode``, which either accepts it or gives the reason.

    Raises:
        InvalidMessage: with a one-line reason naming the broken rule.
    """
    try:
        data: dict[str, Any] = _ENVELOPE_FIELDS.validate_json(raw)
        kind = data["kind"]
        asset_id = data.setdefault("asset_id", None)
        if asset_id is None and kind in ASSET_REQUIRED:
            raise _Unsure
        _PAYLOAD_CHECKS[kind](data["payload"])
        event_time = data["event_time"]
        ingest_time = data.get("ingest_time")
        if event_time.tzinfo is None or (ingest_time is not None and ingest_time.tzinfo is None):
            raise _Unsure
        data["event_time"] = event_time.astimezone(UTC)
        data["ingest_time"] = (datetime.now(UTC) if ingest_time is None
                               else ingest_time.astimezone(UTC))
        data.setdefault("schema_version", SCHEMA_VERSION)
        return data
    except (ValidationError, _Unsure):
        pass
    env = decode(raw)
    return {name: getattr(env, name) for name in Envelope.model_fields}


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
