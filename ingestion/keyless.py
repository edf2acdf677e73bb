"""The sources that need no key, as :class:`ingestion.source.Source` s: simulated
on-chain metrics, simulated news, the statsmodels US macro series, and a user's
history file.

Each one emits on a grid it can recompute from its cursor (the simulators' state is in
the cursor too), so a restart from an older cursor yields exactly the events it yielded
before, and the hosting actor drops the ones already published.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from core.domain import Asset
from core.envelope import Envelope
from ingestion.macro import SOURCE as MACRO_SOURCE
from ingestion.macro import us_macro_envelopes
from ingestion.replay import ReplayQuery, extract, transform
from ingestion.simulated_news import SimulatedNews
from ingestion.simulated_onchain import SimulatedOnchain
from ingestion.source import Batch, Cursor, Reject

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def floor_to(t: datetime, step_s: float) -> datetime:
    """``t`` floored to a multiple of ``step_s`` seconds since the epoch (UTC)."""
    step_us = max(1, int(step_s * 1_000_000))
    since = (t - _EPOCH) // timedelta(microseconds=1)
    return _EPOCH + timedelta(microseconds=since - since % step_us)


def _iso(t: datetime) -> str:
    return t.isoformat()


def _time(s: str) -> datetime:
    return datetime.fromisoformat(s)


class SimulatedOnchainSource:
    """Holders, transfers, DEX liquidity, exchange flows, NAV/APY/TVL per asset, on a
    grid of ``interval_s``; the first start also sends ``history_hours`` of daily
    snapshots."""

    def __init__(self, assets: Sequence[Asset], *, seed: int, interval_s: float,
                 history_hours: int, max_points_per_poll: int = 60,
                 name: str = "simulated-onchain") -> None:
        self.name = name
        self.interval_s = interval_s
        self._assets = list(assets)
        self._seed = seed
        self._history_hours = history_hours
        self._max_points = max_points_per_poll

    def poll(self, cursor: Cursor | None, now: datetime) -> Batch:
        grid_now = floor_to(now, self.interval_s)
        if cursor is None:
            sim = SimulatedOnchain(self._assets, seed=self._seed)
            history = list(sim.history(end=grid_now, hours=self._history_hours))
            if not history:
                history = sim.snapshot(grid_now)
            return Batch(envelopes=history,
                         cursor={"last": _iso(grid_now), "state": sim.state()})
        sim = SimulatedOnchain.from_state(self._assets, cursor["state"], seed=self._seed)
        last = _time(cursor["last"])
        step = timedelta(seconds=self.interval_s)
        out: list[Envelope] = []
        t = last + step
        points = 0
        while t <= grid_now and points < self._max_points:
            out.extend(sim.snapshot(t))
            last, t, points = t, t + step, points + 1
        return Batch(envelopes=out, cursor={"last": _iso(last), "state": sim.state()},
                     more=t <= grid_now)

    def close(self) -> None:
        pass


class SimulatedNewsSource:
    """Headlines with labelled polarity about catalog assets and issuers; stateless, so
    the cursor is only the end of the last window sent."""

    def __init__(self, assets: Sequence[Asset], *, seed: int, interval_s: float,
                 history_hours: int, rate_per_hour: float = 6.0,
                 chunk_hours: int = 24 * 7, name: str = "simulated-news") -> None:
        self.name = name
        self.interval_s = interval_s
        self._news = SimulatedNews(assets, seed=seed, rate_per_hour=rate_per_hour)
        self._history = timedelta(hours=history_hours)
        self._chunk = timedelta(hours=chunk_hours)

    def poll(self, cursor: Cursor | None, now: datetime) -> Batch:
        grid_now = floor_to(now, self.interval_s)
        start = _time(cursor["until"]) if cursor else grid_now - self._history
        end = min(grid_now, start + self._chunk)
        if end <= start:
            return Batch(cursor={"until": _iso(start)})
        return Batch(envelopes=self._news.between(start, end), cursor={"until": _iso(end)},
                     more=end < grid_now)

    def close(self) -> None:
        pass


class MacroReplaySource:
    """The statsmodels US macro quarters (1959–2009), sent once; the cursor keeps the
    last quarter sent, so a restart sends only what is missing."""

    def __init__(self, *, interval_s: float, name: str = MACRO_SOURCE) -> None:
        self.name = name
        self.interval_s = interval_s

    def poll(self, cursor: Cursor | None, now: datetime) -> Batch:
        after = _time(cursor["after"]) if cursor and cursor.get("after") else None
        envs = [e for e in us_macro_envelopes(source=self.name)
                if after is None or e.event_time > after]
        last = envs[-1].event_time if envs else after
        return Batch(envelopes=envs, cursor={"after": _iso(last) if last else None})

    def close(self) -> None:
        pass


class FileReplaySource:
    """A user's CSV/Parquet history at ``speed`` × real time (``None``: as fast as the
    pipeline takes it). Rows sharing an event time always go out together, so the
    cursor (the last event time sent) splits nothing."""

    def __init__(self, query: ReplayQuery, *, batch_rows: int = 50_000,
                 interval_s: float = 1.0) -> None:
        self.name = query.source
        self.interval_s = interval_s
        self._query = query
        self._batch_rows = batch_rows
        self._items: list[tuple[datetime, Envelope | None, Any]] | None = None
        self._anchor: tuple[datetime, datetime] | None = None  # (wall, event) at start

    def _load(self) -> list[tuple[datetime, Envelope | None, Any]]:
        if self._items is None:
            frame = extract(self._query)
            times = frame["time"]
            envelopes, rejected = transform(frame, self._query.model_copy(
                update={"start_after": None}))
            items: list[tuple[datetime, Envelope | None, Any]] = [
                (e.event_time, e, None) for e in envelopes]
            for row, reason in rejected:
                t = times.get(row)
                when = t.to_pydatetime() if t is not None and pd.notna(t) else _EPOCH
                items.append((when, None, Reject({"file": str(self._query.path), "row": row},
                                                 reason)))
            items.sort(key=lambda item: item[0])
            self._items = items
        return self._items

    def poll(self, cursor: Cursor | None, now: datetime) -> Batch:
        items = self._load()
        after = _time(cursor["after"]) if cursor and cursor.get("after") else None
        pending = [it for it in items if after is None or it[0] > after]
        if not pending:
            return Batch(cursor={"after": _iso(after) if after else None})
        limit: datetime | None = None
        if self._query.speed is not None:
            if self._anchor is None:
                self._anchor = (now, pending[0][0])
            wall, event = self._anchor
            limit = event + (now - wall) * self._query.speed
        batch = Batch()
        taken: list[tuple[datetime, Envelope | None, Any]] = []
        for i, item in enumerate(pending):
            if limit is not None and item[0] > limit:
                break
            # Never split one event time across batches.
            if len(taken) >= self._batch_rows and item[0] != taken[-1][0]:
                break
            taken.append(item)
        for _, env, reject in taken:
            if env is not None:
                batch.envelopes.append(env)
            else:
                batch.rejects.append(reject)
        last = taken[-1][0] if taken else after
        batch.cursor = {"after": _iso(last) if last else None}
        batch.more = self._query.speed is None and len(taken) < len(pending)
        return batch

    def close(self) -> None:
        pass
