"""RWA.io as :mod:`ingestion.rwaio` models it, for contract tests.

``x-api-key`` auth on every route. ``/tokenized-asset-time-series/info?assetId=`` is the
publicly seen read endpoint (``{"infos": [...]}``); ``/tokenized-asset-time-series/data``
and ``/tokenized-assets/search`` follow the connector's documented model. Records are in
RWA.io's upload format, ``{"timestamp": <unix ms>, "value": "<number as text>"}``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.fakes.server import Request, Response, json_response

KEY = "rwaio-test-key-91c7"

#: Ids in RWA.io's format (24 hex characters) for the fake's own tokens.
BUIDL_ID = "665f1c2a9b3e4d0012a1b001"
PAXG_ID = "665f1c2a9b3e4d0012a1b002"
KAU_ID = "665f1c2a9b3e4d0012a1b003"


def ms(when: str) -> int:
    """Unix ms of ``YYYY-MM-DDTHH:MM`` in UTC."""
    return int(datetime.fromisoformat(when).replace(tzinfo=UTC).timestamp() * 1000)


def points(*pairs: tuple[str, Any]) -> list[dict[str, Any]]:
    return [{"timestamp": ms(when), "value": value} for when, value in pairs]


def series(ts_id: str, preset: str, records: list[dict[str, Any]], chain: str | None = None
           ) -> dict[str, Any]:
    return {"id": ts_id, "presetId": preset, "chainId": chain, "canUploadData": False,
            "name": preset, "records": records}


def default_assets() -> dict[str, dict[str, Any]]:
    """BUIDL (NAV-pinned, hourly uploads), PAXG (holders, AUM) and KAU (no contract)."""
    return {
        BUIDL_ID: {
            "symbol": "BUIDL", "name": "BlackRock USD Institutional Digital Liquidity Fund",
            "issuer": "BlackRock", "chainId": "ethereum",
            "contractAddress": "0x7712c34205737192402172409a8f7ccef8aa2aec",
            "series": [
                series("b-nav", "nav", points(("2024-06-12T00:00", "1.00"),
                                              ("2024-06-13T00:00", "1.00"))),
                series("b-apy", "apy", points(("2024-06-12T00:00", "5.01"),
                                              ("2024-06-12T23:00", "5.03"),
                                              ("2024-06-13T00:00", "4.98"))),
                series("b-aum", "aum", points(("2024-06-12T00:00", "512000000"),
                                              ("2024-06-13T00:00", "514500000.5"))),
                series("b-holders-eth", "holders", points(("2024-06-13T00:00", "40")),
                       chain="ethereum"),
                series("b-holders", "holders", points(("2024-06-12T00:00", "61"),
                                                      ("2024-06-13T00:00", "62"))),
                series("b-price", "price", points(("2024-06-12T00:00", "1.00"))),
            ],
        },
        PAXG_ID: {
            "symbol": "PAXG", "name": "PAX Gold", "issuer": "Paxos", "chainId": "ethereum",
            "contractAddress": "0x45804880De22913dAFE09f4980848ECE6EcbAf78",
            "series": [
                series("p-holders", "holders", points(("2024-06-13T12:00", "71234"))),
                series("p-tv", "tokenized-value", points(("2024-06-13T12:00", "530000000"))),
            ],
        },
        KAU_ID: {
            "symbol": "KAU", "name": "Kinesis Gold", "issuer": "Kinesis", "chainId": "kinesis",
            "contractAddress": None,
            "series": [series("k-aum", "aum", points(("2024-06-13T00:00", "190000000")))],
        },
    }


class RwaIoFake:
    """Route for :class:`tests.fakes.server.FakeProvider`."""

    def __init__(self, assets: dict[str, dict[str, Any]] | None = None, key: str = KEY,
                 search: bool = True) -> None:
        self.assets = default_assets() if assets is None else assets
        self.key = key
        self.search = search

    def __call__(self, request: Request) -> Response:
        if request.headers.get("x-api-key") != self.key:
            return json_response({"message": "Invalid API key"}, 401)
        if request.path == "/tokenized-assets/search" and self.search:
            return json_response({"results": self._search(request.param("query") or "")})
        asset = self.assets.get(request.param("assetId") or "")
        if asset is None:
            return json_response({"message": "asset not found"}, 404)
        if request.path == "/tokenized-asset-time-series/info":
            return json_response({"infos": [
                {k: v for k, v in s.items() if k != "records"} for s in asset["series"]]})
        if request.path == "/tokenized-asset-time-series/data":
            found = [s for s in asset["series"] if s["id"] == request.param("tsId")]
            if not found:
                return json_response({"message": "time series not found"}, 404)
            lo, hi = int(request.param("from") or 0), int(request.param("to") or 2**62)
            return json_response({"tsId": found[0]["id"], "records": [
                r for r in found[0]["records"]
                if not isinstance(r.get("timestamp"), int) or lo <= r["timestamp"] < hi]})
        return json_response({"message": "Not Found"}, 404)

    def _search(self, text: str) -> list[dict[str, Any]]:
        text = text.lower()
        return [{"id": rwa_id, **{k: a[k] for k in ("symbol", "name", "issuer", "chainId",
                                                    "contractAddress")}}
                for rwa_id, a in self.assets.items()
                if text in (str(a["contractAddress"]).lower(), a["symbol"].lower())
                or text in a["name"].lower()]
