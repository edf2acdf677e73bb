"""RWA.io: daily NAV, yield, TVL/AUM and holder counts of tokenized assets.

READ FIRST: RWA.io publishes no public reference for *reading* its data, so part of
this connector is modeled. Everything endpoint-specific is in :data:`ENDPOINTS` and
:func:`pick_series`, the places to fix once the real read API is known.

Confirmed by public evidence (RWA.io's help article "How to connect your project data
via API", and issuers' open-source clients of ``api.rwa.io``):

* base URL ``https://api.rwa.io``; the key in the ``x-api-key`` header (redacted);
* ``GET /tokenized-asset-time-series/info?assetId=<id>`` lists an asset's series as
  ``{"infos": [{"id", "presetId", "chainId", "canUploadData", ...}]}``; ``presetId``
  names the metric (``nav``, ``aum``, ``holders``, ``tvl``, ``tokenized-value``, ``price``,
  ``circulating-supply``…);
* ``assetId`` is RWA.io's internal id, as in ``app.rwa.io/asset-token/<slug>/<assetId>``;
* a data point is ``{"timestamp": <unix ms>, "value": "<number as text>"}`` (the body of
  ``POST /tokenized-asset-time-series/data/add``).

Modeled, unconfirmed:

* reading points: ``GET /tokenized-asset-time-series/data?assetId&tsId&from&to`` (ms,
  ``to`` exclusive) answering ``{"records": [...]}`` in the upload format;
* finding an asset: ``GET /tokenized-assets/search?query=<contract or symbol>`` answering
  ``{"results": [{"id", "symbol", "contractAddress", ...}]}``. A catalog asset is taken
  only on an exact contract match or, where the catalog has no contract, one exact
  symbol match. While search is refused or malformed, only ``config.symbols``
  (asset_id → RWA.io assetId, which always wins) are covered, with a warning, and
  search is tried again at the next poll;
* an ``apy`` (or ``yield``) preset, in percent.

One ``"onchain"`` envelope per asset per completed UTC day, stamped at the day's start,
with the day's last value of each metric. The cursor is the next day to fetch; a poll
fetches at most ``max_days`` days and sets ``more`` while days remain.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from core.domain import Asset
from core.envelope import Envelope, make
from core.errors import ConfigError, ProviderBadResponse
from core.settings import RwaIoSettings
from ingestion.http import RAW_KEEP_CHARS, ProviderClient, RequestBudget, RetryPolicy
from ingestion.source import Batch, Cursor, Reject

logger = logging.getLogger(__name__)

NAME = "rwaio"

ENDPOINTS: dict[str, str] = {
    "info": "/tokenized-asset-time-series/info",  # confirmed
    "data": "/tokenized-asset-time-series/data",  # modeled on the upload format
    "search": "/tokenized-assets/search",  # modeled
}

#: ``presetId`` → payload field, in order of preference when several fill one field.
PRESETS: tuple[tuple[str, str], ...] = (
    ("nav", "nav"), ("apy", "apy"), ("yield", "apy"), ("holders", "holder_count"),
    ("tvl", "tvl_usd"), ("aum", "tvl_usd"), ("tokenized-value", "tvl_usd"),
)


class RwaIoQuery(BaseModel):
    """Completed UTC days ``[start, end)`` of the given assets.

    Attributes:
        asset_ids: Catalog asset_id → RWA.io assetId.
        start: First day.
        end: Day after the last.
        max_days: Most days one poll asks for.
    """

    model_config = ConfigDict(frozen=True)

    asset_ids: dict[str, str]
    start: date
    end: date
    max_days: int = Field(default=31, ge=1)

    @property
    def span_ms(self) -> tuple[int, int]:
        def ms(d: date) -> int:
            return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000)
        return ms(self.start), ms(self.end)


class RwaIoClient:
    """The three endpoints over :class:`ProviderClient`."""

    def __init__(self, config: RwaIoSettings, *, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if config.api_key is None or not config.api_key.get_secret_value().strip():
            raise ConfigError("rwaio needs an api_key (RWA_SOURCES__RWAIO__API_KEY)")
        self.http = ProviderClient(
            NAME, config.base_url, headers={"x-api-key": config.api_key.get_secret_value()},
            secret_names=frozenset({"x-api-key"}), timeout_s=config.timeout_s,
            retry=RetryPolicy(attempts=config.max_attempts),
            budget=RequestBudget(config.requests_per_day), transport=transport, sleep=sleep)

    def search(self, text: str) -> Any:
        return self.http.get_json(ENDPOINTS["search"], params={"query": text})

    def infos(self, rwa_id: str) -> Any:
        return self.http.get_json(ENDPOINTS["info"], params={"assetId": rwa_id})

    def records(self, rwa_id: str, ts_id: str, span_ms: tuple[int, int]) -> Any:
        return self.http.get_json(ENDPOINTS["data"], params={
            "assetId": rwa_id, "tsId": ts_id, "from": span_ms[0], "to": span_ms[1]})

    def close(self) -> None:
        self.http.close()


def _bad(message: str, answer: Any) -> ProviderBadResponse:
    return ProviderBadResponse(NAME, message, raw=json.dumps(answer)[:RAW_KEEP_CHARS])


def match_search(asset: Asset, answer: Any) -> str | None:
    """The RWA.io assetId among search results that is surely ``asset``, else None."""
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(results, list):
        raise _bad("search answer lacks results", answer)
    rows = [r for r in results if isinstance(r, dict) and isinstance(r.get("id"), str)]
    if asset.contract_address:
        contract = asset.contract_address.lower()
        hits = [r for r in rows if str(r.get("contractAddress") or "").lower() == contract]
    else:
        hits = [r for r in rows if str(r.get("symbol") or "").lower() == asset.symbol.lower()]
    ids = {r["id"] for r in hits}
    return ids.pop() if len(ids) == 1 else None


def discover(client: RwaIoClient, assets: Sequence[Asset], symbols: dict[str, str]
             ) -> tuple[dict[str, str], bool]:
    """asset_id → RWA.io assetId: ``symbols`` first, then a search per other asset.

    Returns:
        The mapping, and whether every search answered (False: search is refused or
        malformed, and the mapping holds what was found before that).
    """
    ids = {a.asset_id: symbols[a.asset_id] for a in assets if a.asset_id in symbols}
    for asset in assets:
        if asset.asset_id in ids:
            continue
        try:
            found = match_search(asset, client.search(asset.contract_address or asset.symbol))
        except ProviderBadResponse as e:
            logger.warning("%s: asset search unusable (%s); covering %d mapped assets",
                           NAME, e.reason, len(ids))
            return ids, False
        if found:
            ids[asset.asset_id] = found
    logger.info("%s: %d of %d assets mapped", NAME, len(ids), len(assets))
    return ids, True


def pick_series(infos: list[Any]) -> dict[str, str]:
    """payload field → tsId, preferring an asset-wide series (no ``chainId``) to a
    per-chain one."""
    valid = [i for i in infos if isinstance(i, dict) and isinstance(i.get("id"), str)]
    picked: dict[str, str] = {}
    for preset, field in PRESETS:
        candidates = sorted((i for i in valid if i.get("presetId") == preset),
                            key=lambda i: i.get("chainId") not in (None, ""))
        if field not in picked and candidates:
            picked[field] = candidates[0]["id"]
    return picked


def extract(client: RwaIoClient, query: RwaIoQuery, infos_cache: dict[str, list[Any]]
            ) -> dict[str, dict[str, Any]]:
    """The only I/O: per asset, its picked series and each one's records answer.

    Returns:
        ``{asset_id: {"series": {field: tsId}, "answers": {tsId: answer}}}``.
    """
    raw: dict[str, dict[str, Any]] = {}
    for asset_id, rwa_id in query.asset_ids.items():
        if rwa_id not in infos_cache:
            answer = client.infos(rwa_id)
            if not isinstance(answer, dict) or not isinstance(answer.get("infos"), list):
                raise _bad("info answer lacks infos", answer)
            infos_cache[rwa_id] = answer["infos"]
        series = pick_series(infos_cache[rwa_id])
        answers = {ts: client.records(rwa_id, ts, query.span_ms) for ts in set(series.values())}
        raw[asset_id] = {"series": series, "answers": answers}
    return raw


def transform(raw: dict[str, dict[str, Any]], query: RwaIoQuery,
              assets: dict[str, Asset]) -> tuple[list[Envelope], list[Reject]]:
    """Records → one envelope per asset and day with that day's last values.

    Raises:
        ProviderBadResponse: A records answer lacks its ``records`` list.
    """
    lo, hi = query.span_ms
    envelopes: list[Envelope] = []
    rejects: list[Reject] = []
    for asset_id, got in raw.items():
        days: dict[date, dict[str, tuple[int, float]]] = {}
        for field, ts_id in got["series"].items():
            answer = got["answers"][ts_id]
            records = answer.get("records") if isinstance(answer, dict) else None
            if not isinstance(records, list):
                raise _bad("data answer lacks records", answer)
            for record in records:
                try:
                    stamp, value = _point(record)
                except (TypeError, ValueError, KeyError) as e:
                    rejects.append(Reject({"asset_id": asset_id, "tsId": ts_id,
                                           "record": record}, str(e)))
                    continue
                if lo <= stamp < hi:
                    day = datetime.fromtimestamp(stamp / 1000, tz=UTC).date()
                    fields = days.setdefault(day, {})
                    if field not in fields or stamp >= fields[field][0]:
                        fields[field] = (stamp, value)
        for day in sorted(days):
            payload: dict[str, Any] = {f: v for f, (_, v) in days[day].items()}
            if "holder_count" in payload:
                payload["holder_count"] = round(payload["holder_count"])
            payload["chain"] = assets[asset_id].blockchain_network
            try:
                envelopes.append(make(
                    source=NAME, kind="onchain", asset_id=asset_id, payload=payload,
                    event_time=datetime(day.year, day.month, day.day, tzinfo=UTC)))
            except ValueError as e:
                rejects.append(Reject({"asset_id": asset_id, "day": day.isoformat(),
                                       "payload": payload}, str(e)))
    envelopes.sort(key=lambda e: (e.event_time, e.asset_id or ""))
    return envelopes, rejects


def _point(record: Any) -> tuple[int, float]:
    if not isinstance(record, dict):
        raise TypeError("record is not an object")
    stamp, value = record["timestamp"], record["value"]
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float, str)):
        raise TypeError(f"timestamp is not unix ms: {stamp!r}")
    try:
        number = math.nan if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise ValueError(f"value is not a finite number: {value!r}")
    return int(float(stamp)), number


class RwaIoSource:
    """Polls RWA.io for the catalog assets it can map (see the module docstring)."""

    def __init__(self, config: RwaIoSettings, *, assets: Sequence[Asset],
                 transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.name = NAME
        self.interval_s = config.interval_s
        self.config = config
        self.assets = {a.asset_id: a for a in assets}
        self.client = RwaIoClient(config, transport=transport, sleep=sleep)
        self._ids: dict[str, str] | None = None  # kept once discovery completes
        self._infos: dict[str, list[Any]] = {}

    def poll(self, cursor: Cursor | None, now: datetime) -> Batch:
        today = now.astimezone(UTC).date()
        if cursor and cursor.get("next_day"):
            start = date.fromisoformat(cursor["next_day"])
        else:
            start = today - timedelta(days=self.config.lookback_days)
        max_days = RwaIoQuery.model_fields["max_days"].default
        end = min(start + timedelta(days=max_days), today)
        if end <= start:  # today is not complete yet: nothing to ask for
            return Batch(cursor={"next_day": start.isoformat()})
        ids = self._ids
        if ids is None:
            # A search that fails is tried again at the next day's poll, one request.
            ids, complete = discover(self.client, list(self.assets.values()),
                                     self.config.symbols)
            self._ids = ids if complete else None
        query = RwaIoQuery(asset_ids=ids, start=start, end=end)
        envelopes, rejects = transform(extract(self.client, query, self._infos), query,
                                       self.assets)
        if rejects:
            logger.warning("%s: %d records rejected, first: %s", NAME, len(rejects),
                           rejects[0].reason)
        return Batch(envelopes=envelopes, rejects=rejects, more=end < today,
                     cursor={"next_day": end.isoformat()})

    def close(self) -> None:
        self.client.close()
