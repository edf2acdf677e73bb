"""NewsAPI.ai (Event Registry) as ``POST /api/v1/article/getArticles`` answers.

The body's ``keyword`` list is OR-ed (case-insensitive, title or body), ``lang`` and
``dateStart`` filter, ``articlesSortBy: "date"`` with ``articlesSortByAsc`` orders, and
``articlesPage``/``articlesCount`` page. A wrong ``apiKey`` gets Event Registry's
``{"error": ...}`` answer with status 401.
"""

from __future__ import annotations

import math
from typing import Any

from tests.fakes.server import Request, Response, json_response

KEY = "er-test-key-5f2c0a"


def article(uri: str, when: str, title: str, body: str = "", *, outlet: str = "CoinDesk",
            lang: str = "eng") -> dict[str, Any]:
    """An article in Event Registry's result shape (``when`` as ``YYYY-MM-DDTHH:MM:SS``)."""
    return {
        "uri": uri, "lang": lang, "isDuplicate": False, "date": when[:10], "time": when[11:],
        "dateTime": f"{when}Z", "dateTimePub": f"{when}Z", "dataType": "news", "sim": 0,
        "url": f"https://www.example-news.com/{uri}", "title": title, "body": body,
        "source": {"uri": "example-news.com", "dataType": "news", "title": outlet},
        "authors": [], "image": None, "eventUri": None, "sentiment": 0.1, "wgt": 1,
        "relevance": 1,
    }


ARTICLES: list[dict[str, Any]] = [
    article("8171000001", "2024-06-13T08:00:00",
            "BlackRock's BUIDL fund tops $500M as tokenized Treasuries grow",
            "The BlackRock USD Institutional Digital Liquidity Fund, issued with "
            "Securitize, passed half a billion dollars.", outlet="CoinDesk"),
    article("8171000002", "2024-06-13T15:30:00", "Gold tokens rally",
            "PAX Gold and Tether Gold both rose 2% as bullion hit a record.",
            outlet="The Block"),
    article("8171000003", "2024-06-14T09:15:00", "Ondo Finance expands to a new chain",
            "Ondo Finance said its tokenized funds will be available on another network.",
            outlet="Blockworks"),
    article("8171000004", "2024-06-14T09:15:00", "Tokenisierte Fonds wachsen",
            "Der BUIDL-Fonds von BlackRock wächst weiter.", outlet="Handelsblatt",
            lang="deu"),
]


class NewsApiAiFake:
    """Route for :class:`tests.fakes.server.FakeProvider` over a mutable article list."""

    def __init__(self, articles: list[dict[str, Any]] | None = None, key: str = KEY) -> None:
        self.articles = list(ARTICLES if articles is None else articles)
        self.key = key

    def __call__(self, request: Request) -> Response:
        if request.method != "POST" or request.path != "/api/v1/article/getArticles":
            return Response(404, "Not Found", {"Content-Type": "text/plain"})
        body = request.json()
        if body.get("apiKey") != self.key:
            return json_response({"error": "Invalid API key. Check your apiKey."}, 401)
        words = body.get("keyword") or []
        words = [words] if isinstance(words, str) else words
        langs = body.get("lang") or []
        langs = {langs} if isinstance(langs, str) else set(langs)
        start = body.get("dateStart") or "0000-00-00"
        hits = [a for a in self.articles
                if (not langs or a["lang"] in langs) and a["date"] >= start
                and any(w.lower() in f"{a['title']}\n{a['body']}".lower() for w in words)]
        hits.sort(key=lambda a: (a["dateTime"], a["uri"]),
                  reverse=not body.get("articlesSortByAsc", False))
        count = min(int(body.get("articlesCount", 100)), 100)
        page = int(body.get("articlesPage", 1))
        return json_response({"articles": {
            "results": hits[(page - 1) * count:page * count], "totalResults": len(hits),
            "page": page, "count": count, "pages": math.ceil(len(hits) / count)}})
