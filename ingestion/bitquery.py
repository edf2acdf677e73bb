"""Bitquery: hourly ERC-20 transfer activity and DEX liquidity of the catalog's tokens.

Bitquery's V2 GraphQL API (``POST https://streaming.bitquery.io/graphql`` with
``{"query": ..., "variables": {...}}`` and ``Authorization: Bearer <token>``) answers
``{"data": {"EVM": {...}}}``, or ``{"errors": [{"message": ...}]}`` (often with HTTP
200) when the query, the token or the plan is wrong. Two queries, each covering every
token of one network at once:

* ``EVM(network, dataset: combined) { Transfers(...) }`` filtered on
  ``Transfer.Currency.SmartContract in $tokens``, successful transfers and
  ``Block.Time`` in ``[since, before)``, grouped by ``Block.Time(interval: {in: hours,
  count: 1})`` and the contract, with ``count`` and ``sum(of: Transfer_Amount)``:
  ``transfer_count`` and ``transfer_volume`` (token units, as Bitquery's ``Amount`` is
  already scaled by the token's decimals). An hour with no row had no transfer.
* ``EVM(network, dataset: realtime) { DEXPoolEvents(...) }`` for pools holding a token
  on either side, with each pool's latest ``Liquidity.AmountCurrencyAInUSD`` and
  ``AmountCurrencyBInUSD`` (``maximum: Block_Time``) before the window's end:
  ``dex_liquidity`` is the USD value of every pool the token is in. The realtime
  dataset holds recent hours only, so liquidity is asked for once caught up and given
  to the window's last hour.

The query shapes, filters, metrics and the ``combined``/``realtime`` datasets follow
Bitquery's documentation (docs.bitquery.io: "ERC20 Token Transfers API", "Transfer
Cube", "Ethereum Liquidity API", "Limits"); ``sum(of: Transfer_Amount)`` and the hourly
``Time(interval:)`` dimension appear there in separate examples, combined here.

Windows are UTC hours on a grid, fetched once over (plus ``settle_minutes``), up to
``max_hours_per_request`` per request; the cursor keeps the next hour per network, so a
re-poll from an old cursor asks for the same windows and yields the same envelopes.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, Field

from core.domain import Asset
from core.envelope import Envelope, make
from core.errors import ConfigError, ProviderAuthError, ProviderBadResponse
from core.settings import BitquerySettings
from ingestion.determinism import floor_hour, require_aware
from ingestion.evm import TokenTarget, token_targets
from ingestion.http import RAW_KEEP_CHARS, ProviderClient, RequestBudget, RetryPolicy
from ingestion.source import Batch, Cursor, Reject

logger = logging.getLogger(__name__)

SOURCE = "bitquery"
_HOUR = timedelta(hours=1)
_CURSOR_VERSION = 1
_AUTH_MESSAGE = re.compile(
    r"unauthori[sz]ed|unauthenticated|forbidden|"
    r"(invalid|expired|missing|bad)\s+(api\s+|access\s+|oauth\s+)?(token|key)|"
    r"token\s+(is\s+)?(invalid|expired|missing)", re.IGNORECASE)

#: Catalog chain → Bitquery ``evm_network``, for the networks its docs query.
NETWORKS: dict[str, str] = {"ethereum": "eth", "bsc": "bsc", "arbitrum": "arbitrum",
                            "base": "base", "polygon": "matic", "optimism": "optimism"}

TRANSFERS_QUERY = """
query RwaTransfers($network: evm_network, $tokens: [String!], $since: DateTime,
                   $till: DateTime, $limit: Int) {
  EVM(network: $network, dataset: combined) {
    Transfers(
      where: {
        Block: {Time: {since: $since, before: $till}}
        Transfer: {Currency: {SmartContract: {in: $tokens}}, Success: true}
      }
      limit: {count: $limit}
    ) {
      Block {
        Time(interval: {in: hours, count: 1})
      }
      Transfer { Currency { SmartContract } }
      count
      volume: sum(of: Transfer_Amount)
    }
  }
}
"""

LIQUIDITY_QUERY = """
query RwaDexLiquidity($network: evm_network, $tokens: [String!], $till: DateTime) {
  EVM(network: $network, dataset: realtime) {
    DEXPoolEvents(
      where: {
        Block: {Time: {before: $till}}
        TransactionStatus: {Success: true}
        any: [
          {PoolEvent: {Pool: {CurrencyA: {SmartContract: {in: $tokens}}}}}
          {PoolEvent: {Pool: {CurrencyB: {SmartContract: {in: $tokens}}}}}
        ]
      }
    ) {
      PoolEvent {
        Pool {
          SmartContract
          CurrencyA { SmartContract }
          CurrencyB { SmartContract }
        }
        Liquidity {
          AmountCurrencyAInUSD(maximum: Block_Time)
          AmountCurrencyBInUSD(maximum: Block_Time)
        }
      }
    }
  }
}
"""


# -- query -----------------------------------------------------------------------------
class BitqueryOptions(BaseModel):
    """Knobs BitquerySettings does not have; the defaults suit production."""

    max_hours_per_request: int = Field(default=24, ge=1, le=24 * 31)
    settle_minutes: int = Field(default=10, ge=0, description="Wait after an hour ends.")
    dex_liquidity: bool = Field(default=True, description="Also query DEXPoolEvents.")
    row_limit: int = Field(default=10_000, ge=1)


class WindowQuery(BaseModel):
    """Every token of one network over the hours ``[since, till)``."""

    network: str = Field(min_length=1)
    tokens: list[str] = Field(min_length=1)
    since: datetime
    till: datetime
    row_limit: int = 10_000

    def transfers(self) -> dict[str, Any]:
        return {"query": TRANSFERS_QUERY, "variables": {
            "network": self.network, "tokens": self.tokens, "since": _iso(self.since),
            "till": _iso(self.till), "limit": self.row_limit}}

    def liquidity(self) -> dict[str, Any]:
        return {"query": LIQUIDITY_QUERY, "variables": {
            "network": self.network, "tokens": self.tokens, "till": _iso(self.till)}}


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


Target = TokenTarget


def targets(assets: Sequence[Asset], symbols: Mapping[str, str]) -> list[Target]:
    """The assets Bitquery can answer for; see :func:`ingestion.evm.token_targets`."""
    return token_targets(assets, symbols, NETWORKS, provider=SOURCE)


# -- extract ---------------------------------------------------------------------------
class BitqueryClient:
    """GraphQL over one :class:`ProviderClient`: GraphQL errors become provider errors."""

    def __init__(self, http: ProviderClient, path: str) -> None:
        self.http = http
        self.path = path

    def query(self, body: dict[str, Any], cube: str) -> list[Any]:
        """Run one query and return ``data.EVM.<cube>``.

        Raises:
            ProviderAuthError: An ``errors`` entry about the token or authorization.
            ProviderBadResponse: Other ``errors``, or ``data.EVM.<cube>`` is not a list
                (a schema change).
            ProviderError: Whatever :class:`ProviderClient` raises.
        """
        answer = self.http.post_json(self.path, body)
        raw = self.http.redact(json.dumps(answer))[:RAW_KEEP_CHARS]
        errors = answer.get("errors") if isinstance(answer, dict) else None
        if errors:
            messages = [e.get("message", "") if isinstance(e, dict) else str(e)
                        for e in (errors if isinstance(errors, list) else [errors])]
            text = self.http.redact("; ".join(m for m in messages if m) or "unnamed error")
            if _AUTH_MESSAGE.search(text):
                raise ProviderAuthError(SOURCE, f"GraphQL error on {cube}: {text[:200]}")
            raise ProviderBadResponse(SOURCE, f"GraphQL error on {cube}: {text[:200]}",
                                      raw=raw)
        data = answer.get("data") if isinstance(answer, dict) else None
        evm = data.get("EVM") if isinstance(data, dict) else None
        rows = evm.get(cube) if isinstance(evm, dict) else None
        if not isinstance(rows, list):
            raise ProviderBadResponse(SOURCE, f"no data.EVM.{cube} list", raw=raw)
        return rows

    def close(self) -> None:
        self.http.close()


def extract_transfers(client: BitqueryClient, query: WindowQuery) -> list[Any]:
    """Hourly transfer rows of the window; the result must not hit ``row_limit``."""
    rows = client.query(query.transfers(), "Transfers")
    if len(rows) >= query.row_limit:
        raise ProviderBadResponse(SOURCE, f"Transfers hit the {query.row_limit}-row limit; "
                                  "lower max_hours_per_request",
                                  raw=json.dumps(rows[:20])[:RAW_KEEP_CHARS])
    return rows


def extract_liquidity(client: BitqueryClient, query: WindowQuery) -> list[Any]:
    return client.query(query.liquidity(), "DEXPoolEvents")


# -- transform -------------------------------------------------------------------------
def _reason(e: Exception) -> str:
    return f"missing field {e}" if isinstance(e, KeyError) else str(e) or type(e).__name__


def _number(value: Any, name: str) -> float:
    """A non-negative finite number from Bitquery's numeric strings."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"{name} is not a number: {value!r}")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return number


def transform_transfers(rows: Sequence[Any], query: WindowQuery,
                        ) -> tuple[dict[tuple[str, datetime], tuple[int, float]], list[Reject]]:
    """Rows → ``(token, hour) → (count, volume)``, plus rows that cannot be used."""
    sums: dict[tuple[str, datetime], tuple[int, float]] = {}
    rejects: list[Reject] = []
    for row in rows:
        try:
            hour = datetime.fromisoformat(row["Block"]["Time"]).astimezone(UTC)
            token = str(row["Transfer"]["Currency"]["SmartContract"]).lower()
            count = _number(row["count"], "count")
            volume = _number(row["volume"], "volume")
            if token not in query.tokens:
                raise ValueError(f"unrequested token {token}")
            if not query.since <= hour < query.till or hour != floor_hour(hour):
                raise ValueError(f"{_iso(hour)} is not an hour of the window")
            if not count.is_integer():
                raise ValueError(f"count must be whole, got {row['count']!r}")
        except (KeyError, TypeError, ValueError) as e:
            rejects.append(Reject(row, f"bitquery transfers: {_reason(e)}"))
            continue
        before = sums.get((token, hour), (0, 0.0))
        sums[(token, hour)] = (before[0] + int(count), before[1] + volume)
    return sums, rejects


def transform_liquidity(rows: Sequence[Any], tokens: Sequence[str],
                        ) -> tuple[dict[str, float], list[Reject]]:
    """Pool rows → token → USD value of the pools it is in, plus unusable rows."""
    liquidity: dict[str, float] = defaultdict(float)
    rejects: list[Reject] = []
    for row in rows:
        try:
            event = row["PoolEvent"]
            sides = {str(event["Pool"][side]["SmartContract"]).lower()
                     for side in ("CurrencyA", "CurrencyB")}
            usd = sum(_number(event["Liquidity"][f], f)
                      for f in ("AmountCurrencyAInUSD", "AmountCurrencyBInUSD"))
        except (KeyError, TypeError, ValueError) as e:
            rejects.append(Reject(row, f"bitquery pools: {_reason(e)}"))
            continue
        for token in sides.intersection(tokens):
            liquidity[token] += usd
    return dict(liquidity), rejects


def to_envelopes(group: Sequence[Target], query: WindowQuery,
                 sums: Mapping[tuple[str, datetime], tuple[int, float]],
                 liquidity: Mapping[str, float] | None) -> list[Envelope]:
    """One envelope per token and hour of the window, zeros where Bitquery had no row;
    ``liquidity`` (as of the window's end) goes to the last hour."""
    envelopes: list[Envelope] = []
    hour = query.since
    while hour < query.till:
        for target in group:
            count, volume = sums.get((target.address, hour), (0, 0.0))
            payload: dict[str, Any] = {"transfer_count": count, "transfer_volume": volume,
                                       "chain": target.chain}
            if liquidity and hour + _HOUR == query.till and target.address in liquidity:
                payload["dex_liquidity"] = liquidity[target.address]
            envelopes.append(make(source=SOURCE, kind="onchain", asset_id=target.asset_id,
                                  event_time=hour, payload=payload))
        hour += _HOUR
    return envelopes


# -- the source ------------------------------------------------------------------------
class BitquerySource:
    """Hourly ``"onchain"`` envelopes per catalog token from Bitquery (see module doc)."""

    def __init__(self, config: BitquerySettings, *, assets: Sequence[Asset],
                 transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 options: BitqueryOptions | None = None) -> None:
        if config.api_key is None:
            raise ConfigError("bitquery needs an api_key (an OAuth access token)")
        # ProviderClient joins paths under its base URL with a trailing slash; the
        # endpoint is exactly /graphql, so the client gets the origin and we the path.
        url = urlsplit(config.base_url)
        http = ProviderClient(
            SOURCE, f"{url.scheme}://{url.netloc}",
            headers={"Authorization": f"Bearer {config.api_key.get_secret_value()}",
                     "Accept": "application/json"},
            secret_names=frozenset({"Authorization"}), timeout_s=config.timeout_s,
            retry=RetryPolicy(attempts=config.max_attempts),
            budget=RequestBudget(config.requests_per_day), transport=transport, sleep=sleep)
        self.name = SOURCE
        self.interval_s = config.interval_s
        self.options = options or BitqueryOptions()
        self.groups: dict[str, list[Target]] = defaultdict(list)
        for target in targets(assets, config.symbols):
            self.groups[target.provider_chain].append(target)
        self._lookback = timedelta(days=config.lookback_days)
        self._client = BitqueryClient(http, url.path or "/")

    def poll(self, cursor: Cursor | None, now: datetime) -> Batch:
        now = require_aware(now, "now")
        horizon = floor_hour(now - timedelta(minutes=self.options.settle_minutes))
        nexts = dict((cursor or {}).get("next", {}))
        batch = Batch()
        for network in sorted(self.groups):
            group = self.groups[network]
            since = (datetime.fromisoformat(nexts[network]) if network in nexts
                     else floor_hour(now) - self._lookback)
            if since >= horizon:
                continue
            query = WindowQuery(
                network=network, tokens=sorted({t.address for t in group}), since=since,
                till=min(horizon, since + self.options.max_hours_per_request * _HOUR),
                row_limit=self.options.row_limit)
            sums, rejects = transform_transfers(extract_transfers(self._client, query), query)
            batch.rejects.extend(rejects)
            liquidity = None
            if self.options.dex_liquidity and query.till == horizon:
                liquidity, rejects = transform_liquidity(
                    extract_liquidity(self._client, query), query.tokens)
                batch.rejects.extend(rejects)
            batch.envelopes.extend(to_envelopes(group, query, sums, liquidity))
            nexts[network] = query.till.isoformat()
            batch.more = batch.more or query.till < horizon
        batch.cursor = {"v": _CURSOR_VERSION, "next": nexts}
        return batch

    def close(self) -> None:
        self._client.close()
