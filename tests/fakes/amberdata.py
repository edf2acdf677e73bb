"""A fake of Amberdata's Blockchain REST API, for :mod:`ingestion.amberdata`'s tests.

It serves the two endpoints the connector uses in Amberdata's documented format:

* ``GET /blockchains/tokens/{address}/transfers``: ``payload.records`` newest first
  (Amberdata's default order), paged by ``page``/``size``, with ``totalRecords``;
* ``GET /blockchains/tokens/{address}/supplies/historical``: ``payload.metadata.columns``
  and ``payload.data`` rows (``timestamp``, ``numHolders``, ``circulatingSupply``,
  ``totalSupply``).

Both are wrapped in ``{"status": 200, "title": "OK", "description": "Successful
request", "payload": ...}``, need the ``x-api-key`` header (else ``401 Unauthorized`` as
text, as Amberdata answers) and read the chain from ``x-amberdata-blockchain-id``. Like
the real API as far as we can tell, ``endDate`` is inclusive, so a record stamped exactly
at the end of a day comes back with that day.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tests.fakes.server import Request, Response, json_response

API_KEY = "amberdata-test-key-0123456789"
_TRANSFERS = "/transfers"
_SUPPLIES = "/supplies/historical"


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def transfer(token: str, at: datetime, tokens: str | Decimal, *, decimals: int = 18,
             log_index: int = 0, **overrides: Any) -> dict[str, Any]:
    """One transfer record as Amberdata writes it (``amount`` in base units)."""
    raw = int(Decimal(str(tokens)).scaleb(decimals))
    record: dict[str, Any] = {
        "transactionHash": f"0x{ms(at):064x}",
        "blockHash": f"0x{ms(at) + 1:064x}",
        "blockNumber": str(19_000_000 + ms(at) // 12_000 % 1_000_000),
        "tokenAddress": token.lower(),
        "amount": str(raw),
        "timestamp": ms(at),
        "timestampNanoseconds": 0,
        "logIndex": log_index,
        "blockchainId": "1c9c969065fcd1cf",
        "to": ["0x06012c8cf97bead5deae237070f9587f8e7a266d"],
        "from": "0x41efb7f2fa8e27a5c089082e8a61f15f748f7e0b",
        "decimals": str(decimals),
        "name": "Token",
        "symbol": "TKN",
        "isERC20": True,
        "isERC721": False,
        "isERC777": False,
        "isERC884": False,
        "isERC998": False,
    }
    record.update(overrides)
    return record


def ok(payload: Any) -> Response:
    return json_response({"status": 200, "title": "OK", "description": "Successful request",
                          "payload": payload})


@dataclass
class AmberdataFake:
    """Route for :class:`tests.fakes.server.FakeProvider`.

    Attributes:
        transfers: ``(blockchain id, lowercase address)`` → ``(ms, record)`` pairs.
        holders: ``(blockchain id, lowercase address)`` → ``(day, numHolders)`` pairs.
        api_key: The only key answered.
    """

    transfers: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = field(
        default_factory=dict)
    holders: dict[tuple[str, str], list[tuple[datetime, Any]]] = field(default_factory=dict)
    api_key: str = API_KEY

    def add_transfers(self, token: str, records: Iterable[dict[str, Any]],
                      chain: str = "ethereum-mainnet", *, at: datetime | None = None) -> None:
        """Serve ``records`` in windows holding their ``timestamp``, or ``at`` for records
        whose timestamp is deliberately corrupt."""
        for record in records:
            when = record["timestamp"] if at is None else ms(at)
            self.transfers.setdefault((chain, token.lower()), []).append((when, record))

    def add_holders(self, token: str, rows: Iterable[tuple[datetime, Any]],
                    chain: str = "ethereum-mainnet") -> None:
        self.holders.setdefault((chain, token.lower()), []).extend(rows)

    def __call__(self, request: Request) -> Response:
        if request.headers.get("x-api-key") != self.api_key:
            return Response(401, "Unauthorized", {"Content-Type": "text/plain"})
        chain = request.headers.get("x-amberdata-blockchain-id", "ethereum-mainnet")
        prefix = "/blockchains/tokens/"
        if request.method != "GET" or not request.path.startswith(prefix):
            return Response(404, "Not Found", {"Content-Type": "text/plain"})
        address, _, rest = request.path.removeprefix(prefix).partition("/")
        try:
            start = _date(request.param("startDate"))
            end = _date(request.param("endDate"))
        except (TypeError, ValueError) as e:
            return json_response({"status": 400, "title": "Bad Request",
                                  "description": str(e)}, status=400)
        key = (chain, address.lower())
        if "/" + rest == _TRANSFERS:
            return self._transfers(request, key, start, end)
        if "/" + rest == _SUPPLIES:
            return self._supplies(request, key, start, end)
        return Response(404, "Unknown address or address is not a contract",
                        {"Content-Type": "text/plain"})

    def _transfers(self, request: Request, key: tuple[str, str], start: datetime,
                   end: datetime) -> Response:
        page = int(request.param("page") or 0)
        size = int(request.param("size") or 50)
        rows = sorted(((when, r) for when, r in self.transfers.get(key, [])
                       if ms(start) <= when <= ms(end)),
                      key=lambda item: (item[0], item[1].get("logIndex", 0)), reverse=True)
        return ok({"totalRecords": len(rows),
                   "records": [r for _, r in rows[page * size:(page + 1) * size]]})

    def _supplies(self, request: Request, key: tuple[str, str], start: datetime,
                  end: datetime) -> Response:
        if request.param("timeInterval") != "days" or request.param("timeFormat") != "ms":
            return json_response({"status": 400, "title": "Bad Request",
                                  "description": "expected days in ms"}, status=400)
        data = [[ms(day), count, "1000000000000000000000000", "1000000000000000000000000"]
                for day, count in self.holders.get(key, []) if start <= day <= end]
        return ok({"metadata": {"columns": ["timestamp", "numHolders", "circulatingSupply",
                                            "totalSupply"],
                                "startDate": ms(start), "endDate": ms(end), "decimals": "18"},
                   "data": data})


def _date(value: str | None) -> datetime:
    if value is None:
        raise ValueError("startDate and endDate are required")
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
