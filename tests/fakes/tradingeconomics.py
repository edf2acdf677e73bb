"""Trading Economics as its historical endpoint answers, for contract tests.

``GET /historical/country/{countries}/indicator/{indicators}/{start}/{end}?c=KEY&f=json``
returns the rows of every requested country and indicator whose ``DateTime`` falls in
``[start, end]`` (days, inclusive), as a JSON array in the documented field names.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from urllib.parse import unquote

from tests.fakes.server import Request, Response, json_response

KEY = "te-test-key:s3cr3t"


def row(country: str, category: str, when: str, value: Any, *, frequency: str = "Monthly",
        symbol: str = "X") -> dict[str, Any]:
    return {"Country": country, "Category": category, "DateTime": when, "Value": value,
            "Frequency": frequency, "HistoricalDataSymbol": symbol,
            "LastUpdate": f"{when[:10]}T15:00:00"}


#: Real-looking US history: FOMC rate, CPI YoY prints and 10-year yields.
ROWS: list[dict[str, Any]] = [
    row("United States", "Interest Rate", "2024-03-20T00:00:00", 5.5, symbol="FDTR"),
    row("United States", "Interest Rate", "2024-05-01T00:00:00", 5.5, symbol="FDTR"),
    row("United States", "Inflation Rate", "2024-03-31T00:00:00", 3.5, symbol="CPI YOY"),
    row("United States", "Inflation Rate", "2024-04-30T00:00:00", 3.4, symbol="CPI YOY"),
    row("United States", "Government Bond 10Y", "2024-06-10T00:00:00", 4.47,
        frequency="Daily", symbol="USGG10YR:IND"),
    row("United States", "Government Bond 10Y", "2024-06-11T00:00:00", 4.40,
        frequency="Daily", symbol="USGG10YR:IND"),
    row("Euro Area", "Interest Rate", "2024-06-06T00:00:00", 4.25, symbol="EURR002W"),
]


class TradingEconomicsFake:
    """Route for :class:`tests.fakes.server.FakeProvider` over a mutable list of rows."""

    def __init__(self, rows: list[dict[str, Any]] | None = None, key: str = KEY) -> None:
        self.rows = list(ROWS if rows is None else rows)
        self.key = key

    def __call__(self, request: Request) -> Response:
        if request.param("c") != self.key:
            return Response(401, "Unauthorized", {"Content-Type": "text/plain"})
        parts = unquote(request.path).strip("/").split("/")
        if len(parts) != 7 or parts[:2] != ["historical", "country"] or parts[3] != "indicator":
            return Response(404, "No Data", {"Content-Type": "text/plain"})
        countries = {c.strip().lower() for c in parts[2].split(",")}
        indicators = {i.strip().lower() for i in parts[4].split(",")}
        start, end = date.fromisoformat(parts[5]), date.fromisoformat(parts[6])
        return json_response([
            r for r in self.rows
            if str(r.get("Country", "")).lower() in countries
            and str(r.get("Category", "")).lower() in indicators
            and start <= datetime.fromisoformat(str(r["DateTime"])).date() <= end])
