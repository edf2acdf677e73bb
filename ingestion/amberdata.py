"""Amberdata: daily ERC-20 holder counts and transfer activity of the catalog's tokens.

Two endpoints of Amberdata's Blockchain REST API (``https://api.amberdata.com``), keyed
by the ``x-api-key`` header, the chain named by ``x-amberdata-blockchain-id``
(``ethereum-mainnet``, ``polygon-mainnet``), answering ``{"status": 200, "title": "OK",
"description": "Successful request", "payload": {...}}``:

* ``GET /blockchains/tokens/{address}/supplies/historical`` with ``startDate``,
  ``endDate``, ``timeInterval=days`` and ``timeFormat=ms``: a table,
  ``payload.metadata.columns`` (``timestamp``, ``numHolders``, ``circulatingSupply``,
  ``totalSupply``) and ``payload.data`` (one row per day). ``numHolders`` becomes
  ``holder_count``.
* ``GET /blockchains/tokens/{address}/transfers`` with ``startDate``, ``endDate``,
  ``page`` (from 0), ``size`` and ``timeFormat=ms``: ``payload.records`` (``amount`` in
  the token's base units, ``decimals``, ``timestamp`` in ms) and
  ``payload.totalRecords``. A day's pages are summed into ``transfer_count`` and
  ``transfer_volume``; the volume is in token units (``amount / 10**decimals``),
  because the records carry no USD value.

Paths, headers, parameters and field names follow Amberdata's published reference
(docs.amberdata.io, "Token Supplies by Address Historical" and "Token Transfers - By
Token Address"). Not confirmed there: the largest ``size`` the transfers endpoint
takes (other endpoints allow 1000; we ask 100), and whether ``endDate`` is inclusive,
so records outside the day are dropped here. We found no documented per-token
exchange inflow/outflow endpoint, so ``exchange_inflow``/``outflow`` stay unset.

Windows are UTC days. A day is fetched once it is over (plus ``settle_minutes``); each
asset's cursor entry names its next day and, mid-day, the page reached and the sums so
far, so a poll that stops on its request allowance resumes where it stopped and a
re-poll from an old cursor yields the same envelopes. A poll goes round the assets a
day at a time until ``max_requests_per_poll`` is spent. Each envelope's ``event_time`` is
its day's 00:00 UTC, Amberdata's own timestamp for the daily row. A token Amberdata does
not index answers 404, which fails the poll as :class:`ProviderBadResponse`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from pydantic import BaseModel, Field

from core.domain import Asset
from core.envelope import Envelope, make
from core.errors import ConfigError, ProviderBadResponse
from core.settings import AmberdataSettings
from ingestion.determinism import require_aware
from ingestion.evm import EVM_ADDRESS, TokenTarget, token_targets
from ingestion.http import RAW_KEEP_CHARS, ProviderClient, RequestBudget, RetryPolicy
from ingestion.source import Batch, Cursor, Reject

logger = logging.getLogger(__name__)

SOURCE = "amberdata"
KEY_HEADER = "x-api-key"
CHAIN_HEADER = "x-amberdata-blockchain-id"
_DAY = timedelta(days=1)
_CURSOR_VERSION = 1

#: Catalog chain → Amberdata blockchain id, only for the chains these two endpoints
#: document (their ``x-amberdata-blockchain-id`` enum). Tokens elsewhere are skipped.
BLOCKCHAIN_IDS: dict[str, str] = {"ethereum": "ethereum-mainnet", "polygon": "polygon-mainnet"}


# -- query -----------------------------------------------------------------------------
class AmberdataOptions(BaseModel):
    """Knobs AmberdataSettings does not have; the defaults suit production."""

    page_size: int = Field(default=100, ge=1, le=1000, description="Transfers per page.")
    max_requests_per_poll: int = Field(default=50, ge=2)
    settle_minutes: int = Field(default=60, ge=0, description="Wait after a day ends.")


class TokenQuery(BaseModel):
    """One request about one token on one chain over ``[start, end)``."""

    address: str = Field(pattern=EVM_ADDRESS.pattern)
    blockchain_id: str = Field(min_length=1)
    start: datetime
    end: datetime
    page: int = Field(default=0, ge=0)
    size: int = Field(default=100, ge=1)

    def _dates(self) -> dict[str, str]:
        fmt = "%Y-%m-%dT%H:%M:%SZ"
        return {"startDate": self.start.strftime(fmt), "endDate": self.end.strftime(fmt),
                "timeFormat": "ms"}

    def transfers(self) -> tuple[str, dict[str, str]]:
        """Path and parameters of this page of transfers."""
        return (f"/blockchains/tokens/{self.address}/transfers",
                {**self._dates(), "page": str(self.page), "size": str(self.size)})

    def holders(self) -> tuple[str, dict[str, str]]:
        """Path and parameters of the daily supplies (holder counts)."""
        return (f"/blockchains/tokens/{self.address}/supplies/historical",
                {**self._dates(), "timeInterval": "days"})


Target = TokenTarget


def targets(assets: Sequence[Asset], symbols: Mapping[str, str]) -> list[Target]:
    """The assets Amberdata can answer for; see :func:`ingestion.evm.token_targets`."""
    return token_targets(assets, symbols, BLOCKCHAIN_IDS, provider=SOURCE)


# -- extract ---------------------------------------------------------------------------
class AmberdataClient:
    """The two endpoints, over one :class:`ProviderClient` per blockchain id (the chain
    travels in a header) sharing one request budget."""

    def __init__(self, make_http: Callable[[str], ProviderClient]) -> None:
        self._make_http = make_http
        self._http: dict[str, ProviderClient] = {}

    def get(self, blockchain_id: str, path: str, params: dict[str, str]) -> Any:
        if blockchain_id not in self._http:
            self._http[blockchain_id] = self._make_http(blockchain_id)
        return self._http[blockchain_id].get_json(path, params=params)

    def close(self) -> None:
        for http in self._http.values():
            http.close()


def _payload(body: Any, path: str, *keys: str) -> dict[str, Any]:
    payload = body.get("payload") if isinstance(body, dict) else None
    if not isinstance(payload, dict) or any(k not in payload for k in keys):
        raise ProviderBadResponse(SOURCE, f"{path}: no payload with {list(keys)}",
                                  raw=json.dumps(body)[:RAW_KEEP_CHARS])
    return payload


def extract_transfers(client: AmberdataClient, query: TokenQuery) -> tuple[list[Any], int | None]:
    """One page of transfers and ``totalRecords`` (``None`` when not given).

    Raises:
        ProviderBadResponse: No ``payload.records`` array.
        ProviderError: Whatever :class:`ProviderClient` raises.
    """
    path, params = query.transfers()
    body = client.get(query.blockchain_id, path, params)
    payload = _payload(body, path, "records")
    if not isinstance(payload["records"], list):
        raise ProviderBadResponse(SOURCE, f"{path}: records is not an array",
                                  raw=json.dumps(body)[:RAW_KEEP_CHARS])
    total = payload.get("totalRecords")
    return payload["records"], total if isinstance(total, int) else None


def extract_holders(client: AmberdataClient, query: TokenQuery) -> list[dict[str, Any]]:
    """The supplies table as one dict per row, keyed by ``metadata.columns``.

    Raises:
        ProviderBadResponse: No ``metadata.columns`` naming ``timestamp`` and
            ``numHolders``, or ``data`` is not an array.
        ProviderError: Whatever :class:`ProviderClient` raises.
    """
    path, params = query.holders()
    body = client.get(query.blockchain_id, path, params)
    payload = _payload(body, path, "metadata", "data")
    meta, data = payload["metadata"], payload["data"]
    columns = meta.get("columns") if isinstance(meta, dict) else None
    if (not isinstance(columns, list) or not {"timestamp", "numHolders"} <= set(columns)
            or not isinstance(data, list)):
        raise ProviderBadResponse(SOURCE, f"{path}: not a numHolders table",
                                  raw=json.dumps(body)[:RAW_KEEP_CHARS])
    return [dict(zip(columns, row, strict=False)) if isinstance(row, list) else {"row": row}
            for row in data]


# -- transform -------------------------------------------------------------------------
def parse_time(value: Any) -> datetime:
    """Epoch milliseconds (number or digits) or ISO 8601, as aware UTC.

    Raises:
        TypeError, ValueError: Not a timestamp.
    """
    if isinstance(value, str) and not value.isdigit():
        parsed = datetime.fromisoformat(value)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"not a timestamp: {value!r}")
    try:
        return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
    except (OverflowError, OSError) as e:
        raise ValueError(f"timestamp out of range: {value!r}") from e


def transform_transfers(records: Sequence[Any], *, start: datetime,
                        end: datetime) -> tuple[int, float, list[Reject]]:
    """Sum one page of transfers in ``[start, end)``: count, token units, rejects."""
    count, volume, rejects = 0, Decimal(0), []
    for record in records:
        try:
            if not isinstance(record, dict):
                raise TypeError("not an object")
            when = parse_time(record["timestamp"])
            amount = _base_units(record["amount"])
            decimals = int(record["decimals"])
            if not 0 <= decimals <= 77:
                raise ValueError(f"decimals out of range: {decimals}")
        except (KeyError, TypeError, ValueError) as e:
            rejects.append(Reject(record, f"amberdata transfer: {_reason(e)}"))
            continue
        if start <= when < end:
            count += 1
            volume += amount.scaleb(-decimals)
    return count, float(volume), rejects


def _reason(e: Exception) -> str:
    return f"missing field {e}" if isinstance(e, KeyError) else str(e) or type(e).__name__


def _base_units(value: Any) -> Decimal:
    """A transfer ``amount``: a non-negative integer of base units, as text or number."""
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        amount = Decimal("NaN")
    if not amount.is_finite() or amount < 0 or amount != amount.to_integral_value():
        raise ValueError(f"amount must be a non-negative integer, got {value!r}")
    return amount


def transform_holders(rows: Sequence[dict[str, Any]], *,
                      day: datetime) -> tuple[int | None, list[Reject]]:
    """``numHolders`` of the row stamped ``day`` (``None`` when there is none)."""
    for row in rows:
        try:
            if parse_time(row.get("timestamp")) != day:
                continue
        except (TypeError, ValueError):
            continue  # a row we cannot place belongs to no day we ask about
        value = row.get("numHolders")
        if (isinstance(value, str) and value.isdigit()) or (type(value) is int and value >= 0):
            return int(value), []
        return None, [Reject(row, f"amberdata holders: numHolders must be a count, "
                                  f"got {value!r}")]
    return None, []


def to_envelope(target: Target, day: datetime, *, holders: int | None, count: int,
                volume: float) -> Envelope:
    payload = {"transfer_count": count, "transfer_volume": volume, "chain": target.chain,
               **({"holder_count": holders} if holders is not None else {})}
    return make(source=SOURCE, kind="onchain", asset_id=target.asset_id, event_time=day,
                payload=payload)


# -- the source ------------------------------------------------------------------------
@dataclass(slots=True)
class _Progress:
    """One asset's cursor: the day being fetched and what is known of it so far."""

    day: str
    holders_done: bool = False
    holders: int | None = None
    page: int = 0
    count: int = 0
    volume: float = 0.0

    @property
    def start(self) -> datetime:
        return datetime.fromisoformat(self.day).replace(tzinfo=UTC)


def floor_day(t: datetime) -> datetime:
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


class AmberdataSource:
    """Daily ``"onchain"`` envelopes per catalog token from Amberdata (see module doc)."""

    def __init__(self, config: AmberdataSettings, *, assets: Sequence[Asset],
                 transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 options: AmberdataOptions | None = None) -> None:
        if config.api_key is None:
            raise ConfigError("amberdata needs an api_key")
        key = config.api_key.get_secret_value()
        budget = RequestBudget(config.requests_per_day)

        def make_http(blockchain_id: str) -> ProviderClient:
            return ProviderClient(
                SOURCE, config.base_url, headers={KEY_HEADER: key, CHAIN_HEADER: blockchain_id,
                                                  "Accept": "application/json"},
                secret_names=frozenset({KEY_HEADER}), timeout_s=config.timeout_s,
                retry=RetryPolicy(attempts=config.max_attempts), budget=budget,
                transport=transport, sleep=sleep)

        self.name = SOURCE
        self.interval_s = config.interval_s
        self.options = options or AmberdataOptions()
        self.targets = targets(assets, config.symbols)
        self._lookback = timedelta(days=config.lookback_days)
        self._client = AmberdataClient(make_http)

    def poll(self, cursor: Cursor | None, now: datetime) -> Batch:
        now = require_aware(now, "now")
        horizon = floor_day(now - timedelta(minutes=self.options.settle_minutes))
        first = (floor_day(now) - self._lookback).date().isoformat()
        saved = (cursor or {}).get("assets", {})
        progress = {t.asset_id: _Progress(**saved[t.asset_id]) if t.asset_id in saved
                    else _Progress(first) for t in self.targets}
        batch = Batch()
        allowance = self.options.max_requests_per_poll
        # Round robin, a day per asset per pass, so one busy token cannot starve the rest.
        spent = -1
        refused: set[str] = set()
        last_error: ProviderBadResponse | None = None
        while 0 < allowance != spent:
            spent = allowance
            for target in self.targets:
                if target.asset_id in refused:
                    continue
                try:
                    progress[target.asset_id], allowance = self._advance(
                        target, progress[target.asset_id], horizon, allowance, batch)
                except ProviderBadResponse as e:
                    # One token Amberdata refuses (not indexed, a bad override) must not
                    # hold back the rest: dead-letter it, keep its day, go on.
                    refused.add(target.asset_id)
                    last_error = e
                    allowance -= 1
                    batch.rejects.append(Reject(e.raw or "", f"{target.asset_id}: {e.reason}"))
        if last_error is not None and len(refused) == len(self.targets):
            raise last_error  # not one token's problem: the provider's answers changed
        batch.more = any(p.start < horizon for p in progress.values())
        batch.cursor = {"v": _CURSOR_VERSION,
                        "assets": {k: asdict(p) for k, p in progress.items()}}
        return batch

    def _advance(self, target: Target, p: _Progress, horizon: datetime, allowance: int,
                 batch: Batch) -> tuple[_Progress, int]:
        """Fetch at most one more day of ``target`` within ``allowance`` requests.

        Returns:
            The asset's progress (updated in place, or the next day's once a day is
            emitted) and the allowance left.
        """
        if p.start >= horizon:
            return p, allowance
        query = TokenQuery(address=target.address, blockchain_id=target.provider_chain,
                           start=p.start, end=p.start + _DAY, size=self.options.page_size)
        if not p.holders_done and allowance > 0:
            rows = extract_holders(self._client, query)
            allowance -= 1
            p.holders, rejects = transform_holders(rows, day=p.start)
            p.holders_done = True
            batch.rejects.extend(rejects)
        while p.holders_done and allowance > 0:
            records, total = extract_transfers(self._client,
                                               query.model_copy(update={"page": p.page}))
            allowance -= 1
            count, volume, rejects = transform_transfers(records, start=query.start,
                                                         end=query.end)
            p.page, p.count, p.volume = p.page + 1, p.count + count, p.volume + volume
            batch.rejects.extend(rejects)
            if len(records) < query.size or (total is not None and p.page * query.size >= total):
                batch.envelopes.append(to_envelope(target, p.start, holders=p.holders,
                                                   count=p.count, volume=p.volume))
                return _Progress((p.start + _DAY).date().isoformat()), allowance
        return p, allowance

    def close(self) -> None:
        self._client.close()
