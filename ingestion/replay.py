"""Replay a user's history file (CSV or Parquet) into envelopes at a chosen speed.

The source follows the connector shape used across ingestion: a typed query
(:class:`ReplayQuery`), :func:`extract` which is the only step that touches the file
system, and :func:`transform` which turns the frame into envelopes without side effects.
:class:`Replayer` ties them together and paces emission by the gaps between event times.

File layout: one row per message and a ``time`` column of ISO dates or datetimes (naive
values are read as UTC). Other columns are matched, case-insensitively, to the fields of
the kind's payload model (``open``/``high``/``low``/``close``/``volume`` for bars,
``price``/``volume`` for ticks, ``series``/``value``/``unit``… for macro, ``title``/
``body``/``url``/``outlet``… for news, any ``OnchainPayload`` field for onchain). An
``asset_id`` column, where present and filled, overrides ``ReplayQuery.asset_id``.
Columns that match nothing are ignored. News ``assets``/``issuers`` cells may be lists
(Parquet) or ``;``/``,``-separated text (CSV).

Rows are numbered from 1 in file order, the header not counted. A row that cannot become
a valid envelope is never raised: it comes back as ``(row_number, reason)`` so the
caller can dead-letter it while the good rows flow on. Problems with the file as a whole
(unreadable, no ``time`` column, a required payload column missing) raise
:class:`core.errors.ConfigError` instead.

Resuming: ``ReplayStats.last_event_time`` is the cursor. Passing it back as
``ReplayQuery.start_after`` skips exactly the rows at or before it. Because several rows
may share one event time, a stop request only takes effect between distinct event times,
so a resumed replay neither repeats nor skips a row.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.envelope import ASSET_REQUIRED, PAYLOAD_MODELS, Envelope, Kind, make
from core.errors import ConfigError

logger = logging.getLogger(__name__)

TIME_COLUMN = "time"
ASSET_COLUMN = "asset_id"

#: Longest single sleep while a stop event is being watched, so a stop request is
#: honoured promptly even across a day-long gap replayed in real time.
_MAX_SLEEP_S = 0.5

_CSV_SUFFIXES = (".csv", ".csv.gz")
_PARQUET_SUFFIXES = (".parquet", ".pq")

_FieldKind = Literal["int", "float", "str", "list"]


class ReplayQuery(BaseModel):
    """What to replay and how fast.

    Attributes:
        path: The history file; ``.csv``/``.csv.gz`` or ``.parquet``/``.pq``.
        kind: The envelope kind every row becomes.
        source: The envelopes' ``source``.
        speed: Event time per wall-clock time: ``1.0`` is real time, ``60.0`` replays an
            hour a minute; ``None`` emits as fast as possible.
        asset_id: The asset when the file has no ``asset_id`` column (or a blank cell).
        series: The macro series when the file has no ``series`` column (or a blank
            cell).
        start_after: Resume cursor: rows whose time is at or before it are skipped.
            Naive values are read as UTC.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path
    kind: Kind
    source: str = Field(default="replay", min_length=1, max_length=64)
    speed: float | None = Field(default=None, gt=0)
    asset_id: str | None = Field(default=None, min_length=1, max_length=64)
    series: str | None = Field(default=None, min_length=1, max_length=80)
    start_after: datetime | None = None

    @field_validator("start_after")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        # Naive means UTC, as for the file's own times.
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


@dataclass(slots=True)
class ReplayStats:
    """What one :meth:`Replayer.run` got through.

    Attributes:
        emitted: Envelopes handed to ``emit``.
        rejected: ``(row_number, reason)`` of rows that could not become envelopes, in
            replay order.
        last_event_time: Event time of the last row the run got through (emitted or
            rejected); pass it as ``start_after`` to resume. It starts at the query's
            ``start_after``, so a run that gets nowhere keeps the cursor where it was.
        stopped: Whether the run ended early because ``stop`` was set.
    """

    emitted: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    last_event_time: datetime | None = None
    stopped: bool = False


@dataclass(frozen=True, slots=True)
class _Row:
    """One row of the replay stream: an envelope, or the reason it could not be one."""

    row: int
    time: datetime | None
    envelope: Envelope | None = None
    reason: str | None = None


class _RowError(Exception):
    """A row-level problem; its message is the dead-letter reason."""


# -- extract -----------------------------------------------------------------------------


def extract(query: ReplayQuery) -> pd.DataFrame:
    """Read the history file into a frame sorted by time.

    Args:
        query: Names the file; only ``path`` is used here.

    Returns:
        The rows with lower-cased column names, indexed by 1-based row number in file
        order, ``time`` parsed to UTC timestamps (``NaT`` where missing or unparsable,
        sorted last) and stably sorted by it, so rows sharing a time keep file order.
        CSV columns other than ``time`` stay text; :func:`transform` converts them.

    Raises:
        ConfigError: If the suffix is not supported, the file cannot be read, it has no
            ``time`` column, or ``time`` holds numbers rather than ISO text/timestamps.
    """
    path = query.path
    name = path.name.lower()
    try:
        if name.endswith(_CSV_SUFFIXES):
            # All text: type inference would turn an asset id like "0042" into 42, and
            # numeric fields are converted per payload field in transform anyway.
            frame = pd.read_csv(path, dtype=str)
        elif name.endswith(_PARQUET_SUFFIXES):
            frame = pd.read_parquet(path)
        else:
            supported = ", ".join((*_CSV_SUFFIXES, *_PARQUET_SUFFIXES))
            raise ConfigError(
                f"replay file {path} has an unsupported suffix; use one of {supported}"
            )
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read replay file {path}: {e}") from e
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="row")
    frame = _prepare(frame, path)
    logger.info("read %d rows from %s", len(frame), path)
    return frame


def _prepare(frame: pd.DataFrame, origin: object) -> pd.DataFrame:
    """Normalise column names, parse ``time`` and sort by it; idempotent."""
    frame = frame.rename(columns=lambda c: str(c).strip().lower())
    if frame.columns.duplicated().any():
        dupes = sorted(set(frame.columns[frame.columns.duplicated()]))
        raise ConfigError(f"replay file {origin} repeats columns (case-insensitively): {dupes}")
    if TIME_COLUMN not in frame.columns:
        raise ConfigError(f"replay file {origin} has no {TIME_COLUMN!r} column")
    frame = frame.assign(**{TIME_COLUMN: _parse_times(frame[TIME_COLUMN], origin)})
    return frame.sort_values(TIME_COLUMN, kind="stable", na_position="last")


def _parse_times(column: pd.Series, origin: object) -> pd.Series:
    if isinstance(column.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(column):
        parsed = pd.to_datetime(column, utc=True)
    elif pd.api.types.is_numeric_dtype(column) and not column.isna().all():
        # Epoch numbers are ambiguous (s? ms? ns?); guessing would silently shift time.
        raise ConfigError(
            f"replay file {origin}: {TIME_COLUMN!r} holds numbers; write ISO dates/datetimes"
        )
    else:
        parsed = pd.to_datetime(column, utc=True, errors="coerce", format="ISO8601")
    # Envelopes carry microseconds; flooring here keeps the resume cursor (a datetime)
    # comparable with the file's times, so a nanosecond remainder cannot cause a repeat.
    return parsed.dt.floor("us")


# -- transform ---------------------------------------------------------------------------


def transform(
    frame: pd.DataFrame, query: ReplayQuery
) -> tuple[list[Envelope], list[tuple[int, str]]]:
    """Turn the rows of :func:`extract` into envelopes; no I/O.

    Rows at or before ``query.start_after`` are skipped. Rows with no usable time are
    always rejected, since they cannot be placed relative to the cursor.

    Args:
        frame: As returned by :func:`extract` (index = 1-based row numbers).
        query: Kind, source and the defaults for ``asset_id`` and ``series``.

    Returns:
        The envelopes in time order, and ``(row_number, reason)`` for every row that
        failed validation, the reason naming the field (e.g. ``"price: Input should be
        greater than 0 (got -1.0)"``).

    Raises:
        ConfigError: If a column every row needs is absent (a required payload field, or
            ``asset_id``/``series`` with no default in the query).
    """
    envelopes: list[Envelope] = []
    rejected: list[tuple[int, str]] = []
    for item in _rows(frame, query):
        if item.envelope is not None:
            envelopes.append(item.envelope)
        else:
            rejected.append((item.row, item.reason or "invalid"))
    return envelopes, rejected


def _rows(frame: pd.DataFrame, query: ReplayQuery) -> list[_Row]:
    """The replay stream in time order, with rejected rows in their place."""
    frame = _prepare(frame, query.path)
    model = PAYLOAD_MODELS[query.kind]
    kinds = _field_kinds(model)
    fields = [c for c in frame.columns if c in kinds]
    _check_columns(frame, query, model, fields)
    ignored = [c for c in frame.columns if c not in kinds and c not in (TIME_COLUMN, ASSET_COLUMN)]
    if ignored:
        logger.debug("replay of %s ignores columns %s", query.path, ignored)

    cutoff = pd.Timestamp(query.start_after) if query.start_after is not None else None
    out: list[_Row] = []
    skipped = 0
    for row_no, record in zip(frame.index, frame.to_dict("records"), strict=True):
        row = int(row_no)
        stamp = record[TIME_COLUMN]
        if pd.isna(stamp):
            out.append(
                _Row(row, None, reason=f"{TIME_COLUMN}: missing or not an ISO date/datetime")
            )
            continue
        if cutoff is not None and stamp <= cutoff:
            skipped += 1
            continue
        event_time: datetime = stamp.to_pydatetime(warn=False)
        try:
            envelope = _envelope(record, query, model, kinds, fields, event_time)
        except _RowError as e:
            out.append(_Row(row, event_time, reason=str(e)))
            continue
        out.append(_Row(row, event_time, envelope=envelope))
    if skipped:
        logger.debug("skipped %d rows at or before %s", skipped, query.start_after)
    return out


def _check_columns(
    frame: pd.DataFrame, query: ReplayQuery, model: type[BaseModel], fields: list[str]
) -> None:
    """Fail once for the whole file rather than rejecting every row the same way."""
    missing = [
        name
        for name, info in model.model_fields.items()
        if info.is_required()
        and name not in frame.columns
        and not (name == "series" and query.series is not None)
    ]
    if missing:
        hint = " (or set ReplayQuery.series)" if "series" in missing else ""
        raise ConfigError(
            f"{query.kind} replay file {query.path} lacks required columns {missing}{hint}"
        )
    if query.kind in ASSET_REQUIRED and ASSET_COLUMN not in frame.columns and not query.asset_id:
        raise ConfigError(
            f"{query.kind} replay file {query.path} has no {ASSET_COLUMN!r} column "
            "and ReplayQuery.asset_id is not set"
        )
    if not fields:
        raise ConfigError(
            f"{query.kind} replay file {query.path} has no {model.__name__} columns "
            f"(expected some of {sorted(model.model_fields)})"
        )


def _envelope(
    record: Mapping[str, Any],
    query: ReplayQuery,
    model: type[BaseModel],
    kinds: Mapping[str, _FieldKind],
    fields: list[str],
    event_time: datetime,
) -> Envelope:
    payload: dict[str, Any] = {}
    for name in fields:
        value = _coerce(name, kinds[name], record[name])
        if value is not None:
            payload[name] = value
    if query.kind == "macro" and "series" not in payload and query.series is not None:
        payload["series"] = query.series
    if query.kind == "onchain" and not payload:
        raise _RowError("payload: no onchain metric given")

    asset_id = _text(record.get(ASSET_COLUMN)) or query.asset_id
    if asset_id is None and query.kind in ASSET_REQUIRED:
        raise _RowError(f"{ASSET_COLUMN}: missing")

    try:
        # Validate the payload ourselves: the envelope keeps the dict it is given, so
        # the coerced, normalised values must be what goes in.
        clean = model.model_validate(payload).model_dump(exclude_unset=True)
        return make(
            source=query.source,
            kind=query.kind,
            asset_id=asset_id,
            event_time=event_time,
            payload=clean,
        )
    except ValidationError as e:
        raise _RowError(_reason(e)) from e


def _reason(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ()))
    if err.get("type") == "missing":
        return f"{loc}: missing"
    msg = str(err.get("msg", "invalid"))
    got = err.get("input")
    if loc and not isinstance(got, dict):
        return f"{loc}: {msg} (got {_short(got)})"
    return f"{loc}: {msg}" if loc else msg


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _field_kinds(model: type[BaseModel]) -> dict[str, _FieldKind]:
    """How to convert a cell for each payload field, read from its annotation."""
    kinds: dict[str, _FieldKind] = {}
    for name, info in model.model_fields.items():
        ann = info.annotation
        args = set(get_args(ann)) if get_origin(ann) in (Union, types.UnionType) else {ann}
        if int in args:
            kinds[name] = "int"
        elif float in args:
            kinds[name] = "float"
        elif any(get_origin(a) is list or a is list for a in args):
            kinds[name] = "list"
        else:
            kinds[name] = "str"
    return kinds


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | tuple | np.ndarray):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _text(value: Any) -> str | None:
    if _is_missing(value):
        return None
    return str(value).strip()


def _coerce(name: str, kind: _FieldKind, value: Any) -> Any:
    """One cell as the payload field wants it; ``None`` when missing.

    Unconvertible text is passed through unchanged so the payload model reports it with
    its own message and the field name.
    """
    if _is_missing(value):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if kind == "list":
        if isinstance(value, str):
            parts = value.replace(";", ",").split(",")
            return [p.strip() for p in parts if p.strip()]
        if isinstance(value, list | tuple | np.ndarray):
            return [str(v) for v in value if not _is_missing(v)]
        return [str(value)]
    if kind == "str":
        return value.strip() if isinstance(value, str) else str(value)
    number: Any = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return value
    if isinstance(number, float) and not math.isfinite(number):
        # Pydantic would accept it, but JSON carries NaN/inf as null, so the envelope
        # would not survive its own codec.
        raise _RowError(f"{name}: must be a finite number (got {_short(value)})")
    if kind == "int" and isinstance(number, float) and number.is_integer():
        # CSVs written from a column with gaps spell counts as "12.0".
        return int(number)
    return number


# -- replayer ----------------------------------------------------------------------------


class Replayer:
    """Reads a history file and emits its envelopes paced by their event times."""

    def __init__(
        self,
        query: ReplayQuery,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Prepare a replay; nothing is read until :meth:`run`.

        Args:
            query: What to replay and how fast.
            clock: Monotonic seconds; injected so pacing can be tested on fake time.
            sleep: Sleeps the given seconds; must let ``clock`` advance by about that.
        """
        self.query = query
        self._clock = clock
        self._sleep = sleep

    def run(
        self,
        emit: Callable[[Envelope], None],
        *,
        stop: threading.Event | None = None,
    ) -> ReplayStats:
        """Replay the file once, handing each envelope to ``emit``.

        Envelope ``i`` goes out when ``(event_time_i - event_time_0) / speed`` seconds
        have passed since the first one; the schedule is anchored to the first emission
        rather than chained gap by gap, so time spent in ``emit`` does not accumulate as
        drift. With ``speed=None`` nothing sleeps.

        Args:
            emit: Called with each envelope in event-time order; its exceptions
                propagate and that envelope is not counted.
            stop: When set, the run ends before the next distinct event time (rows that
                share the current time are still emitted, so resuming from
                ``last_event_time`` leaves no gap). A pending sleep is cut short.

        Returns:
            Counts, rejected rows and the resume cursor.

        Raises:
            ConfigError: If the file cannot be read or lacks required columns.
        """
        query = self.query
        stats = ReplayStats(last_event_time=query.start_after)
        items = _rows(extract(query), query)
        anchor: tuple[float, datetime] | None = None
        current: datetime | None = None
        started = False
        for item in items:
            boundary = not started or item.time != current
            if boundary and stop is not None and stop.is_set():
                stats.stopped = True
                break
            started = True
            current = item.time
            if item.envelope is None:
                stats.rejected.append((item.row, item.reason or "invalid"))
                if item.time is not None:
                    stats.last_event_time = item.time
                continue
            if query.speed is not None and item.time is not None:
                if anchor is None:
                    anchor = (self._clock(), item.time)
                else:
                    lag = (item.time - anchor[1]).total_seconds() / query.speed
                    if not self._wait_until(anchor[0] + lag, stop):
                        stats.stopped = True
                        break
            emit(item.envelope)
            stats.emitted += 1
            stats.last_event_time = item.time
        logger.info(
            "replay of %s %s: %d emitted, %d rejected, cursor %s",
            query.path,
            "stopped" if stats.stopped else "finished",
            stats.emitted,
            len(stats.rejected),
            stats.last_event_time.isoformat() if stats.last_event_time else None,
        )
        return stats

    def _wait_until(self, target: float, stop: threading.Event | None) -> bool:
        """Sleep until ``clock() >= target``; ``False`` if ``stop`` was set first."""
        while True:
            # Due rows go out even when stop is set: rows sharing the current event time
            # must not be split across a stop (see run).
            remaining = target - self._clock()
            if remaining <= 0:
                return True
            if stop is not None and stop.is_set():
                return False
            self._sleep(min(remaining, _MAX_SLEEP_S) if stop is not None else remaining)
