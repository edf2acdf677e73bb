"""A fake of Bitquery's V2 GraphQL endpoint, for :mod:`ingestion.bitquery`'s tests.

It takes ``POST /graphql`` with ``{"query": ..., "variables": {...}}`` and
``Authorization: Bearer <token>`` (else ``401``), reads the query text far enough to
tell which cube is asked for and whether the query selects what the answer needs (the
hourly ``Block.Time`` interval, the contract filter, ``count`` and ``sum(of:
Transfer_Amount)``, the USD liquidity of both pool sides), and answers in Bitquery's
shape: ``{"data": {"EVM": {"Transfers": [...]}}}`` with counts and sums as strings, or
``{"errors": [{"message": ...}]}`` with HTTP 200 for a query it cannot answer, as
Bitquery does.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.fakes.server import Request, Response, json_response

TOKEN = "ory_at_bitquery-test-token-0123456789"
PATH = "/graphql"

_TRANSFERS_NEEDS = (
    re.compile(r"EVM\(\s*network:\s*\$network"),
    re.compile(r"Transfers\("),
    re.compile(r"Block:\s*\{\s*Time:\s*\{\s*since:\s*\$since,\s*before:\s*\$till\s*\}"),
    re.compile(r"SmartContract:\s*\{\s*in:\s*\$tokens\s*\}"),
    re.compile(r"Time\(interval:\s*\{\s*in:\s*hours,\s*count:\s*1\s*\}\)"),
    re.compile(r"\bcount\b(?!:)"),
)
_SUM = re.compile(r"(\w+)\s*:\s*sum\(of:\s*Transfer_Amount\)")
_LIQUIDITY_NEEDS = (
    re.compile(r"DEXPoolEvents\("),
    re.compile(r"before:\s*\$till"),
    re.compile(r"CurrencyA:\s*\{\s*SmartContract:\s*\{\s*in:\s*\$tokens"),
    re.compile(r"CurrencyB:\s*\{\s*SmartContract:\s*\{\s*in:\s*\$tokens"),
    re.compile(r"AmountCurrencyAInUSD\(maximum:\s*Block_Time\)"),
    re.compile(r"AmountCurrencyBInUSD\(maximum:\s*Block_Time\)"),
)


@dataclass(frozen=True)
class Transfer:
    network: str
    token: str
    time: datetime
    amount: float


@dataclass(frozen=True)
class PoolEvent:
    """A pool's reserves (in USD) after an event at ``time``."""

    network: str
    pool: str
    currency_a: str
    currency_b: str
    time: datetime
    a_usd: float
    b_usd: float


def graphql_error(message: str) -> Response:
    return json_response({"errors": [{"message": message, "locations": [
        {"line": 1, "column": 1}]}], "data": None})


@dataclass
class BitqueryFake:
    """Route for :class:`tests.fakes.server.FakeProvider`; holds raw on-chain events and
    aggregates them the way the queries ask."""

    transfers: list[Transfer] = field(default_factory=list)
    pools: list[PoolEvent] = field(default_factory=list)
    token: str = TOKEN
    #: Extra rows appended to the next Transfers answer (malformed-row tests).
    extra_rows: list[Any] = field(default_factory=list)

    def __call__(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return Response(401, "Unauthorized", {"Content-Type": "text/plain"})
        if request.method != "POST" or request.path != PATH:
            return Response(404, "Not Found", {"Content-Type": "text/plain"})
        try:
            body = json.loads(request.body)
            query, variables = body["query"], body.get("variables") or {}
        except (ValueError, KeyError, TypeError):
            return graphql_error("Invalid request body")
        if "DEXPoolEvents(" in query:
            return self._liquidity(query, variables)
        if "Transfers(" in query:
            return self._transfers(query, variables)
        return graphql_error("Cannot query field on type \"EVM\"")

    def _transfers(self, query: str, variables: dict[str, Any]) -> Response:
        missing = [p.pattern for p in _TRANSFERS_NEEDS if not p.search(query)]
        alias = _SUM.search(query)
        if missing or alias is None:
            return graphql_error(f"query lacks {missing or ['sum(of: Transfer_Amount)']}")
        try:
            since, till = _time(variables["since"]), _time(variables["till"])
            tokens = set(variables["tokens"])
            network = variables["network"]
        except (KeyError, TypeError, ValueError) as e:
            return graphql_error(f"Variable error: {e}")
        groups: dict[tuple[datetime, str], list[float]] = defaultdict(list)
        for t in self.transfers:
            if t.network == network and t.token in tokens and since <= t.time < till:
                hour = t.time.replace(minute=0, second=0, microsecond=0)
                groups[(hour, t.token)].append(t.amount)
        rows: list[Any] = [
            {"Block": {"Time": hour.strftime("%Y-%m-%dT%H:%M:%SZ")},
             "Transfer": {"Currency": {"SmartContract": token}},
             "count": str(len(amounts)), alias.group(1): f"{sum(amounts):.6f}"}
            for (hour, token), amounts in sorted(groups.items())]
        rows += self.extra_rows
        self.extra_rows = []
        return json_response({"data": {"EVM": {"Transfers": rows}}})

    def _liquidity(self, query: str, variables: dict[str, Any]) -> Response:
        missing = [p.pattern for p in _LIQUIDITY_NEEDS if not p.search(query)]
        if missing:
            return graphql_error(f"query lacks {missing}")
        try:
            till, tokens = _time(variables["till"]), set(variables["tokens"])
        except (KeyError, TypeError, ValueError) as e:
            return graphql_error(f"Variable error: {e}")
        latest: dict[str, PoolEvent] = {}
        for e in sorted(self.pools, key=lambda e: e.time):
            if (e.network == variables.get("network") and e.time < till
                    and {e.currency_a, e.currency_b} & tokens):
                latest[e.pool] = e
        rows = [{"PoolEvent": {
            "Pool": {"SmartContract": e.pool, "CurrencyA": {"SmartContract": e.currency_a},
                     "CurrencyB": {"SmartContract": e.currency_b}},
            "Liquidity": {"AmountCurrencyAInUSD": f"{e.a_usd:.2f}",
                          "AmountCurrencyBInUSD": f"{e.b_usd:.2f}"}}}
            for e in latest.values()]
        return json_response({"data": {"EVM": {"DEXPoolEvents": rows}}})


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise TypeError(f"DateTime expected, got {value!r}")
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
