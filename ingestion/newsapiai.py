"""NewsAPI.ai (Event Registry): news articles about the catalog's assets and issuers.

The API as documented by Event Registry (newsapi.ai docs, the ``eventregistry`` SDK):

* ``POST /api/v1/article/getArticles`` with a JSON body: ``action: "getArticles"``,
  ``keyword`` (a list, joined by ``keywordOper: "or"``), ``lang`` (ISO 639-3, ``"eng"``),
  ``dateStart`` (``YYYY-MM-DD``, inclusive), ``articlesSortBy: "date"``,
  ``articlesPage``/``articlesCount`` (at most 100), ``resultType: "articles"`` and the
  key as ``apiKey`` in the body.
* The answer is ``{"articles": {"results": [...], "totalResults", "page", "pages"}}``;
  each article has ``uri``, ``lang``, ``dateTime`` (UTC, ``Z``), ``url``, ``title``,
  ``body`` and ``source.title``. A refused key comes back as ``{"error": "..."}``.

The key lives only in the request body, where :class:`ProviderClient`'s redaction
(headers and parameters) cannot see it, so the client here extends that redaction to
it: no log line, error message or dead-lettered raw body carries it, even when the
provider echoes the request back. The body itself is never logged.

Keywords: each asset's name and its symbol where that is distinctive (4+ letters);
``config.symbols`` replaces them per asset. They are batched, ``keywords_per_query`` to
a request. Each batch pages through its results oldest first; its cursor holds the
``dateStart`` and page being read, and the last ``dateTime`` emitted with the article
uris at that instant, so a re-poll yields no article twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from core.domain import Asset
from core.envelope import Envelope, make
from core.errors import ConfigError, ProviderAuthError, ProviderBadResponse
from core.settings import NewsApiAiSettings
from ingestion.http import RAW_KEEP_CHARS, ProviderClient, RequestBudget, RetryPolicy
from ingestion.source import Batch, Cursor, Reject

logger = logging.getLogger(__name__)

NAME = "newsapiai"
PATH = "/api/v1/article/getArticles"

#: Event Registry's ISO 639-3 codes → the two-letter codes the rest of the platform uses.
_LANGS = {"eng": "en", "deu": "de", "spa": "es", "fra": "fr", "ita": "it", "por": "pt",
          "zho": "zh", "jpn": "ja", "kor": "ko", "rus": "ru", "ara": "ar", "nld": "nl"}
_BODY_MAX = 100_000


class NewsApiAiQuery(BaseModel):
    """One page of one keyword batch.

    Attributes:
        keywords: Phrases, any of which an article must mention.
        lang: Event Registry language code.
        date_start: First publication date asked for (inclusive).
        page: 1-based page.
        count: Articles per page, at most 100 (the API's limit).
        keywords_per_query: How many phrases go in one request; Event Registry refuses
            very long keyword lists (the exact limit is not published; 15 stays clear).
    """

    model_config = ConfigDict(frozen=True)

    keywords: list[str] = Field(min_length=1)
    lang: str = "eng"
    date_start: date
    page: int = Field(default=1, ge=1)
    count: int = Field(default=100, ge=1, le=100)
    keywords_per_query: int = Field(default=15, ge=1)

    def body(self) -> dict[str, Any]:
        return {
            "action": "getArticles", "keyword": self.keywords, "keywordOper": "or",
            "lang": self.lang, "dateStart": self.date_start.isoformat(),
            "articlesSortBy": "date", "articlesSortByAsc": True,  # oldest first: stable pages
            "articlesPage": self.page, "articlesCount": self.count,
            "articlesArticleBodyLen": -1, "resultType": "articles", "dataType": ["news"],
            "isDuplicateFilter": "skipDuplicates",
        }


class _BodyKeyClient(ProviderClient):
    """A :class:`ProviderClient` that also redacts a key sent in the request body, which
    its own redaction (headers and parameters only) cannot see."""

    def __init__(self, *args: Any, body_secret: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._body_secret = body_secret

    def redact(self, text: str) -> str:
        return super().redact(text).replace(self._body_secret, "***")


class NewsApiAiClient:
    """``getArticles`` over :class:`ProviderClient`, with the body's key kept secret."""

    def __init__(self, config: NewsApiAiSettings, *,
                 transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if config.api_key is None or not config.api_key.get_secret_value().strip():
            raise ConfigError("newsapiai needs an api_key (RWA_SOURCES__NEWSAPIAI__API_KEY)")
        self._key = config.api_key.get_secret_value()
        self.http = _BodyKeyClient(
            NAME, config.base_url, body_secret=self._key, timeout_s=config.timeout_s,
            retry=RetryPolicy(attempts=config.max_attempts),
            budget=RequestBudget(config.requests_per_day), transport=transport, sleep=sleep)

    def articles(self, query: NewsApiAiQuery) -> Any:
        answer = self.http.post_json(PATH, {**query.body(), "apiKey": self._key})
        if isinstance(answer, dict) and "error" in answer and "articles" not in answer:
            message = self.http.redact(str(answer["error"]))[:200]
            if re.search(r"api ?key|auth|token", message, re.IGNORECASE):
                raise ProviderAuthError(NAME, f"refused: {message}")
            raise ProviderBadResponse(NAME, f"error answer: {message}",
                                      raw=self.http.redact(json.dumps(answer))[:RAW_KEEP_CHARS])
        return answer

    def close(self) -> None:
        self.http.close()


def extract(client: NewsApiAiClient, query: NewsApiAiQuery) -> Any:
    """The only I/O: one page of one keyword batch."""
    return client.articles(query)


def default_keywords(asset: Asset) -> list[str]:
    """The asset's name, and its symbol where that is distinctive enough to search."""
    words = [asset.name]
    if len(asset.symbol) >= 4 and asset.symbol.isalnum():
        words.append(asset.symbol)
    return words


class _Matcher:
    """Finds the catalog assets an article's text mentions."""

    def __init__(self, assets: Sequence[Asset]) -> None:
        self.rules = []
        for asset in assets:
            strong = [_phrase(asset.name, fold=True),
                      _phrase(asset.symbol, fold=len(asset.symbol) >= 4)]
            issuer = [_phrase(p, fold=False) for p in _issuer_parts(asset.issuer)]
            self.rules.append((asset, strong, issuer))

    def match(self, text: str) -> list[Asset]:
        """Assets named (by name or symbol) first, then those only whose issuer is."""
        named = [a for a, strong, _ in self.rules if any(p.search(text) for p in strong)]
        by_issuer = [a for a, _, issuer in self.rules
                     if a not in named and any(p.search(text) for p in issuer)]
        return named + by_issuer


def _phrase(term: str, *, fold: bool) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w){re.escape(term)}(?!\w)", re.IGNORECASE if fold else 0)


def _issuer_parts(issuer: str) -> list[str]:
    """``"Circle (Hashnote)"`` → ``["Circle", "Hashnote"]``; ``"A / B"`` → ``["A", "B"]``."""
    parts = re.split(r"\s*/\s*|\s*\(\s*|\s*\)\s*", issuer)
    parts = [re.sub(r",?\s+(Inc\.?|Ltd\.?|LLC|AG|SA)$", "", p).strip() for p in parts]
    return [p for p in parts if len(p) >= 3]


def parse_time(article: dict[str, Any]) -> datetime:
    """``dateTime`` (or ``date`` + ``time``) as an aware UTC datetime."""
    value = article.get("dateTime") or f"{article.get('date')}T{article.get('time')}Z"
    parsed = datetime.fromisoformat(str(value))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def transform(answer: Any, matcher: _Matcher
              ) -> tuple[list[tuple[str, Envelope]], list[Reject], int]:
    """A ``getArticles`` answer → ``(uri, envelope)`` pairs, rejects and the page count.

    Raises:
        ProviderBadResponse: The answer lacks ``articles.results``.
    """
    block = answer.get("articles") if isinstance(answer, dict) else None
    if not isinstance(block, dict) or not isinstance(block.get("results"), list):
        raise ProviderBadResponse(NAME, "answer lacks articles.results",
                                  raw=json.dumps(answer)[:RAW_KEEP_CHARS])
    out: list[tuple[str, Envelope]] = []
    rejects: list[Reject] = []
    for article in block["results"]:
        try:
            out.append(_article(article, matcher))
        except (TypeError, ValueError, KeyError) as e:
            rejects.append(Reject(article, str(e)))
    pages = block.get("pages")
    return out, rejects, pages if isinstance(pages, int) else 0


def _article(article: Any, matcher: _Matcher) -> tuple[str, Envelope]:
    if not isinstance(article, dict):
        raise TypeError("article is not an object")
    uri, title = article.get("uri"), article.get("title")
    if not isinstance(uri, str) or not uri:
        raise KeyError("article has no uri")
    if not isinstance(title, str) or not title.strip():
        raise ValueError("article has no title")
    body = article.get("body") if isinstance(article.get("body"), str) else None
    matched = matcher.match(f"{title}\n{body or ''}")
    source = article.get("source") if isinstance(article.get("source"), dict) else {}
    lang = str(article.get("lang") or "eng")
    payload = {
        "title": title.strip(), "body": body[:_BODY_MAX] if body else None,
        "url": article.get("url"), "outlet": source.get("title"),
        "lang": _LANGS.get(lang, lang[:8]),
        "assets": [a.asset_id for a in matched],
        "issuers": list(dict.fromkeys(a.issuer for a in matched)),
    }
    return uri, make(source=NAME, kind="news", asset_id=matched[0].asset_id if matched else None,
                     event_time=parse_time(article), payload=payload)


class NewsApiAiSource:
    """Polls NewsAPI.ai for articles mentioning the catalog's assets."""

    def __init__(self, config: NewsApiAiSettings, *, assets: Sequence[Asset],
                 transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.name = NAME
        self.interval_s = config.interval_s
        self.config = config
        self.matcher = _Matcher(assets)
        words: dict[str, str] = {}
        for asset in assets:
            override = config.symbols.get(asset.asset_id)
            for word in [override] if override else default_keywords(asset):
                words.setdefault(word.lower(), word)
        size = NewsApiAiQuery.model_fields["keywords_per_query"].default
        phrases = list(words.values())
        self.batches = {_batch_key(b): b for b in
                        (phrases[i:i + size] for i in range(0, len(phrases), size))}
        self.client = NewsApiAiClient(config, transport=transport, sleep=sleep)

    def poll(self, cursor: Cursor | None, now: datetime) -> Batch:
        """One page of each keyword batch; ``more`` while a batch has pages left."""
        states = dict((cursor or {}).get("batches") or {})
        start = (now.astimezone(UTC) - timedelta(days=self.config.lookback_days)).date()
        envelopes: list[Envelope] = []
        rejects: list[Reject] = []
        emitted: set[str] = set()
        more = False
        # While a batch is part-way through its pages, only such batches are asked:
        # the catch-up polls that follow spend no request on batches already current.
        paging = [k for k in self.batches if (states.get(k) or {}).get("page", 1) > 1]
        for key in paging or list(self.batches):
            keywords = self.batches[key]
            state = states.get(key) or {"date": start.isoformat(), "page": 1,
                                        "last": None, "uris": []}
            query = NewsApiAiQuery(keywords=keywords, date_start=date.fromisoformat(
                state["date"]), page=state["page"])
            pairs, bad, pages = transform(extract(self.client, query), self.matcher)
            rejects += bad
            last = datetime.fromisoformat(state["last"]) if state["last"] else None
            uris = set(state["uris"])
            for uri, env in sorted(pairs, key=lambda p: (p[1].event_time, p[0])):
                if last is not None and (env.event_time < last or
                                         (env.event_time == last and uri in uris)):
                    continue
                if uri not in emitted:
                    envelopes.append(env)
                    emitted.add(uri)
                if last is None or env.event_time > last:
                    last, uris = env.event_time, set()
                uris.add(uri)
            if query.page < pages:
                states[key] = {**state, "page": query.page + 1}
                more = True
            else:
                states[key] = {"date": last.date().isoformat() if last else state["date"],
                               "page": 1}
            states[key].update(last=last.isoformat() if last else None, uris=sorted(uris))
        if rejects:
            logger.warning("%s: %d articles rejected, first: %s", NAME, len(rejects),
                           rejects[0].reason)
        envelopes.sort(key=lambda e: e.event_time)
        # Batches no longer configured drop out of the cursor.
        return Batch(envelopes=envelopes, rejects=rejects, more=more,
                     cursor={"batches": {k: states[k] for k in self.batches}})

    def close(self) -> None:
        self.client.close()


def _batch_key(keywords: list[str]) -> str:
    return hashlib.blake2b("\n".join(keywords).encode(), digest_size=6).hexdigest()
