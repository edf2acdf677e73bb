"""Trading Economics: policy rates, inflation and 10-year government bond yields.

The API as documented at docs.tradingeconomics.com ("Indicators → Historical") and used
by the official ``tradingeconomics`` Python package:

* ``GET /historical/country/{countries}/indicator/{indicators}/{start}/{end}``, countries
  and indicators comma-separated (one request covers every pair), dates ``YYYY-MM-DD``,
  at most 10,000 rows per answer.
* The key travels as the ``c`` query parameter (redacted from every log line and error);
  ``f=json`` asks for JSON.
* The answer is a JSON array of ``{"Country", "Category", "DateTime", "Value",
  "Frequency", "HistoricalDataSymbol", "LastUpdate"}``; ``DateTime`` is naive and read
  as UTC. ``Category`` echoes the indicator in title case ("Interest Rate").

Each row becomes one ``"macro"`` envelope (``asset_id`` ``None``) with a series such as
``US.POLICY_RATE``. The cursor keeps, per series, the last ``DateTime`` published, and
the date up to which windows were asked for. Because monthly figures are published
weeks after the date they carry, every poll asks again for the last ``revisit_days`` and
only rows later than a series' mark are emitted: a re-poll from an old cursor yields the
same rows, and a late CPI print is not lost.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.domain import Asset
from core.envelope import Envelope, make
from core.errors import ConfigError, ProviderBadResponse
from core.settings import TradingEconomicsSettings
from ingestion.http import RAW_KEEP_CHARS, ProviderClient, RequestBudget, RetryPolicy
from ingestion.source import Batch, Cursor, Reject

logger = logging.getLogger(__name__)

NAME = "tradingeconomics"

#: Trading Economics indicator name → (series suffix, unit). ``config.symbols`` adds or
#: replaces entries as ``{"UNEMPLOYMENT": "unemployment rate"}`` (suffix → indicator).
INDICATORS: dict[str, tuple[str, str | None]] = {
    "interest rate": ("POLICY_RATE", "% per year"),
    "inflation rate": ("CPI_YOY", "% YoY"),
    "government bond 10y": ("GOV_BOND_10Y", "% yield"),
}

#: Series prefixes for the usual countries; others get their name in upper snake case.
COUNTRY_CODES: dict[str, str] = {
    "united states": "US", "euro area": "EA", "united kingdom": "GB", "japan": "JP",
    "germany": "DE", "france": "FR", "italy": "IT", "spain": "ES", "switzerland": "CH",
    "canada": "CA", "australia": "AU", "china": "CN", "hong kong": "HK",
    "singapore": "SG", "united arab emirates": "AE", "brazil": "BR", "india": "IN",
}

_FREQUENCIES = {"daily": "D", "weekly": "W", "monthly": "M", "quarterly": "Q",
                "yearly": "A", "annual": "A"}
_ROW_KEYS = ("Country", "Category", "DateTime", "Value")


class TradingEconomicsQuery(BaseModel):
    """One historical request.

    Attributes:
        countries: Trading Economics country names ("united states").
        indicators: Indicator name → (series suffix, unit).
        start: First date asked for (inclusive).
        end: Last date asked for (inclusive).
        window_days: Longest span one poll asks for; a longer backlog takes more polls.
        revisit_days: How far behind the last window each poll looks again, for
            figures published after the date they carry.
    """

    model_config = ConfigDict(frozen=True)

    countries: list[str] = Field(min_length=1)
    indicators: dict[str, tuple[str, str | None]] = Field(min_length=1)
    start: date
    end: date
    window_days: int = Field(default=365, ge=1)
    revisit_days: int = Field(default=120, ge=0)

    @model_validator(mode="after")
    def _progresses(self) -> TradingEconomicsQuery:
        if self.revisit_days >= self.window_days:
            raise ValueError("window_days must exceed revisit_days or a backlog never drains")
        return self

    @property
    def path(self) -> str:
        countries = quote(",".join(self.countries), safe=",")
        indicators = quote(",".join(self.indicators), safe=",")
        return (f"/historical/country/{countries}/indicator/{indicators}/"
                f"{self.start.isoformat()}/{self.end.isoformat()}")


class TradingEconomicsClient:
    """The provider's one endpoint, over :class:`ProviderClient`."""

    def __init__(self, config: TradingEconomicsSettings, *,
                 transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if config.api_key is None or not config.api_key.get_secret_value().strip():
            raise ConfigError("tradingeconomics needs an api_key (RWA_SOURCES__TRADINGECONOMICS"
                              "__API_KEY)")
        self.http = ProviderClient(
            NAME, config.base_url,
            params={"c": config.api_key.get_secret_value(), "f": "json"},
            secret_names=frozenset({"c"}), timeout_s=config.timeout_s,
            retry=RetryPolicy(attempts=config.max_attempts),
            budget=RequestBudget(config.requests_per_day), transport=transport, sleep=sleep)

    def historical(self, query: TradingEconomicsQuery) -> Any:
        return self.http.get_json(query.path)

    def close(self) -> None:
        self.http.close()


def extract(client: TradingEconomicsClient, query: TradingEconomicsQuery) -> Any:
    """The only I/O: one historical request for every country and indicator."""
    return client.historical(query)


def series_name(country: str, suffix: str) -> str:
    """``US.POLICY_RATE`` from ``("United States", "POLICY_RATE")``."""
    key = country.strip().lower()
    code = COUNTRY_CODES.get(key) or re.sub(r"[^A-Z0-9]+", "_", key.upper()).strip("_")
    return f"{code}.{suffix}"


def parse_time(value: Any) -> datetime:
    """A Trading Economics ``DateTime`` (naive, meaning UTC) as an aware datetime."""
    if not isinstance(value, str):
        raise TypeError(f"DateTime is not text: {value!r}")
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def transform(rows: Any, query: TradingEconomicsQuery, last: dict[str, str]
              ) -> tuple[list[Envelope], list[Reject], dict[str, str]]:
    """Rows → macro envelopes later than each series' mark in ``last``.

    Returns:
        Envelopes in time then series order, rejects, and the advanced marks.

    Raises:
        ProviderBadResponse: The answer is not a list of rows in the documented shape.
    """
    if not isinstance(rows, list) or (rows and not any(
            isinstance(r, dict) and all(k in r for k in _ROW_KEYS) for r in rows)):
        raise ProviderBadResponse(NAME, "historical answer is not a list of "
                                  "Country/Category/DateTime/Value rows",
                                  raw=json.dumps(rows)[:RAW_KEEP_CHARS])
    by_category = {name.lower(): spec for name, spec in query.indicators.items()}
    marks = {k: parse_time(v) for k, v in last.items()}
    out: list[tuple[datetime, str, Envelope]] = []
    rejects: list[Reject] = []
    for row in rows:
        try:
            event_time, series, payload = _row(row, by_category)
        except (TypeError, ValueError, KeyError) as e:
            rejects.append(Reject(row, str(e)))
            continue
        if series in marks and event_time <= marks[series]:
            continue
        try:
            env = make(source=NAME, kind="macro", asset_id=None, event_time=event_time,
                       payload=payload)
        except ValueError as e:
            rejects.append(Reject(row, str(e)))
            continue
        out.append((event_time, series, env))
    out.sort(key=lambda t: (t[0], t[1]))
    advanced = dict(last)
    for event_time, series, _ in out:
        advanced[series] = event_time.isoformat()  # sorted by time: the last wins
    return [env for _, _, env in out], rejects, advanced


def _row(row: Any, by_category: dict[str, tuple[str, str | None]]
         ) -> tuple[datetime, str, dict[str, Any]]:
    if not isinstance(row, dict):
        raise TypeError("row is not an object")
    missing = [k for k in _ROW_KEYS if row.get(k) is None]
    if missing:
        raise KeyError(f"row lacks {', '.join(missing)}")
    spec = by_category.get(str(row["Category"]).strip().lower())
    if spec is None:
        raise ValueError(f"unexpected Category {row['Category']!r}")
    value = row["Value"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"Value is not a finite number: {value!r}")
    suffix, unit = spec
    country = str(row["Country"]).strip()
    frequency = str(row.get("Frequency") or "").strip()
    payload = {
        "series": series_name(country, suffix),
        "value": float(value),
        "unit": unit,
        "country": country[:60],
        "frequency": _FREQUENCIES.get(frequency.lower(), frequency[:10]) or None,
    }
    return parse_time(row["DateTime"]), payload["series"], payload


class TradingEconomicsSource:
    """Polls Trading Economics for ``config.countries`` × the indicators.

    ``assets`` is accepted for a uniform constructor; macro series belong to no asset.
    """

    def __init__(self, config: TradingEconomicsSettings, *, assets: Sequence[Asset],
                 transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.name = NAME
        self.interval_s = config.interval_s
        self.config = config
        self.indicators = dict(INDICATORS)
        for suffix, indicator in config.symbols.items():
            self.indicators[indicator.strip().lower()] = (suffix.strip().upper(), None)
        fields = TradingEconomicsQuery.model_fields
        self.window_days: int = fields["window_days"].default
        self.revisit_days: int = fields["revisit_days"].default
        self.client = TradingEconomicsClient(config, transport=transport, sleep=sleep)

    def query(self, cursor: Cursor | None, now: datetime) -> TradingEconomicsQuery:
        """The window after ``cursor``: back ``lookback_days`` on first start, else from
        ``revisit_days`` before the last window's end, at most ``window_days`` long."""
        today = now.astimezone(UTC).date()
        if cursor and cursor.get("through"):
            start = date.fromisoformat(cursor["through"]) - timedelta(days=self.revisit_days)
        else:
            start = today - timedelta(days=self.config.lookback_days)
        start = min(start, today)
        end = min(start + timedelta(days=self.window_days), today)
        return TradingEconomicsQuery(
            countries=self.config.countries, indicators=self.indicators, start=start, end=end,
            window_days=self.window_days, revisit_days=self.revisit_days)

    def poll(self, cursor: Cursor | None, now: datetime) -> Batch:
        query = self.query(cursor, now)
        rows = extract(self.client, query)
        last = dict((cursor or {}).get("last") or {})
        envelopes, rejects, last = transform(rows, query, last)
        if rejects:
            logger.warning("%s: %d rows rejected, first: %s", NAME, len(rejects),
                           rejects[0].reason)
        through = query.end
        if cursor and cursor.get("through"):  # never move back, even if the clock does
            through = max(through, date.fromisoformat(cursor["through"]))
        more = query.end < now.astimezone(UTC).date()
        return Batch(envelopes=envelopes, rejects=rejects, more=more,
                     cursor={"through": through.isoformat(), "last": last})

    def close(self) -> None:
        self.client.close()
