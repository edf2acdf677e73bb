"""Hourly news sentiment per asset and source into gold's ``sentiment_scores``.

:func:`score_news_hourly` scores silver news rows with a :class:`SentimentModel` and
upserts, per (asset, hour, source), the mean score of the hour's stories and their
count. It follows the pipeline's rule for gold: the caller passes **every** silver
news row of each hour it touched (not only the new ones), and each such hour is
recomputed whole. So a replay writes nothing new, and a later story in an hour
already scored updates that hour's mean and count.

Stories are counted as :func:`pipeline.aggregates.news_hourly` counts them, so the
two writers agree on ``article_count``: a story (its URL, else its title) counts
once per hour and source for the envelope's asset and for every asset its payload
names. Rows for assets the catalog does not hold are left out (the table's foreign
key would refuse them). The headline (``title``) is what is scored: the model and
its head are built and measured on headlines.

A plain function of a connection and a loaded model, so a Ray actor that holds the
model can call it from its loop, e.g. ``db.run(lambda c: score_news_hourly(c, model,
rows))`` with :class:`core.db.SyncDb`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from training.sentiment import SentimentModel

#: Decimal places of the stored mean: a story scored in a differently padded batch
#: can differ in the last float bits, which must not count as a change.
SCORE_DECIMALS = 6


@dataclass(frozen=True, slots=True)
class HourlySentiment:
    """One ``sentiment_scores`` row."""

    time: datetime
    asset_id: str
    sentiment_score: float
    article_count: int
    source: str


def _utc(value: Any) -> datetime:
    """An event time in UTC; a naive time is taken as UTC (Spark's session zone)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"event_time must be a datetime, got {type(value).__name__}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _assets(row: Mapping[str, Any]) -> list[str]:
    named = [row.get("asset_id"), *(row.get("assets") or [])]
    return list(dict.fromkeys(a for a in named if a))


def hourly_sentiment(news_rows: Iterable[Mapping[str, Any]], scores: Mapping[str, float],
                     ) -> list[HourlySentiment]:
    """Aggregate scored news rows into hourly rows (pure; no model, no database).

    Args:
        news_rows: Silver news rows with ``event_time``, ``source``, ``asset_id``,
            ``assets``, ``title`` and ``url``.
        scores: The score of each title.

    Returns:
        One row per (hour, asset, source), sorted, with the mean over its stories.
    """
    # (hour, asset, source) → story → (event_time, title): the earliest stamp of a
    # story decides which title stands for it, whatever order the rows came in.
    stories: dict[tuple[datetime, str, str], dict[str, tuple[datetime, str]]] = {}
    for row in news_rows:
        title = (row.get("title") or "").strip()
        if not title:
            continue
        stamp = _utc(row["event_time"])
        hour = stamp.replace(minute=0, second=0, microsecond=0)
        story = (row.get("url") or "").strip() or title
        for asset in _assets(row):
            seen = stories.setdefault((hour, asset, row["source"]), {})
            if story not in seen or (stamp, title) < seen[story]:
                seen[story] = (stamp, title)
    out = []
    for (hour, asset, source), by_story in sorted(stories.items()):
        values = [scores[title] for _, title in by_story.values()]
        mean = round(sum(values) / len(values), SCORE_DECIMALS)
        out.append(HourlySentiment(hour, asset, mean, len(values), source))
    return out


_UPSERT = """
INSERT INTO sentiment_scores AS t (time, asset_id, sentiment_score, article_count, source)
SELECT u.time, u.asset_id, u.score, u.n, u.source
FROM unnest($1::timestamptz[], $2::text[], $3::float8[], $4::int[], $5::text[])
     AS u(time, asset_id, score, n, source)
WHERE EXISTS (SELECT 1 FROM assets a WHERE a.asset_id = u.asset_id)
ON CONFLICT (asset_id, time, source) DO UPDATE
SET sentiment_score = EXCLUDED.sentiment_score, article_count = EXCLUDED.article_count
WHERE ROW(t.sentiment_score, t.article_count)
      IS DISTINCT FROM ROW(EXCLUDED.sentiment_score, EXCLUDED.article_count)
"""


async def upsert_hourly(conn: asyncpg.Connection, rows: Iterable[HourlySentiment]) -> int:
    """Upsert hourly rows into ``sentiment_scores``; returns how many were inserted or
    changed (a row equal to the stored one is not written)."""
    rows = list(rows)
    if not rows:
        return 0
    status = await conn.execute(
        _UPSERT, [r.time for r in rows], [r.asset_id for r in rows],
        [r.sentiment_score for r in rows], [r.article_count for r in rows],
        [r.source for r in rows])
    return int(status.rsplit(" ", 1)[-1])


async def score_news_hourly(conn: asyncpg.Connection, model: SentimentModel,
                            news_rows: Iterable[Mapping[str, Any]]) -> int:
    """Score ``news_rows`` and upsert their hourly means and counts into sentiment_scores.

    Args:
        conn: A connection to the gold database.
        model: The loaded sentiment model.
        news_rows: Every silver news row of the hours to (re)compute; see the module.

    Returns:
        How many ``sentiment_scores`` rows were inserted or changed.
    """
    rows = list(news_rows)
    titles = list(dict.fromkeys(t for r in rows if (t := (r.get("title") or "").strip())))
    if not titles:
        return 0
    scores = {s.text: s.score for s in model.score(titles)}
    return await upsert_hourly(conn, hourly_sentiment(rows, scores))
