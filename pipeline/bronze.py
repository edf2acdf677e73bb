"""Bronze: raw topic → immutable Parquet in the lake, at least once.

The sink polls a batch, validates each message against the envelope contract, sends
the invalid ones to ``dead-letter`` with the reason, writes the valid ones as one
Parquet file (a local file, or an S3 object when the lake is on S3), and only then
commits the Kafka offsets. A crash before the commit replays the batch; silver
deduplicates on natural keys, so nothing is lost or doubled.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import confluent_kafka
import pyarrow as pa
from pydantic_core import to_json

from core import broker, lake
from core.envelope import decode_fields
from core.errors import InvalidMessage, ServiceUnavailable

log = logging.getLogger(__name__)

#: A tick's or bar's payload fields, typed: what silver would parse from ``payload``
#: (``pipeline.silver.PAYLOAD_SCHEMA``, same names, types and order), filled by the sink
#: so that silver reads columns instead of parsing JSON, which was a fifth of its cost.
#: Null for other kinds, for payloads that need the JSON parser's own judgement, and in
#: files written before the column existed; silver parses ``payload`` for those rows.
PRICE_FIELD_TYPES: tuple[tuple[str, pa.DataType], ...] = (
    ("open", pa.float64()), ("high", pa.float64()), ("low", pa.float64()),
    ("close", pa.float64()), ("price", pa.float64()), ("volume", pa.float64()),
    ("nav", pa.float64()), ("interval", pa.string()), ("currency", pa.string()),
)
PRICE_FIELDS = pa.struct(list(PRICE_FIELD_TYPES))
_PRICE_KINDS = frozenset({"tick", "bar"})
_NUMBER_FIELDS = tuple(n for n, t in PRICE_FIELD_TYPES if t == pa.float64())
_TEXT_FIELDS = tuple(n for n, t in PRICE_FIELD_TYPES if t == pa.string())

BRONZE_SCHEMA = pa.schema(
    [
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("key", pa.string()),
        ("source", pa.string()),
        ("kind", pa.string()),
        ("asset_id", pa.string()),
        ("event_time", pa.timestamp("us", tz="UTC")),
        ("ingest_time", pa.timestamp("us", tz="UTC")),
        ("schema_version", pa.int16()),
        ("payload", pa.string()),
        ("price_fields", PRICE_FIELDS),
    ]
)


class Record(Protocol):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Received:
    """A consumed message in the ``Record`` shape."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


#: (topic, partition, offset, key, value) of one consumed message.
Row = tuple[str, int, int, bytes | None, bytes | None]


def dead_letter_message(record: Record, reason: str, *, stage: str) -> bytes:
    """The dead-letter form of a rejected message: where it came from, why, and itself."""
    raw = record.value or b""
    return json.dumps(
        {
            "stage": stage,
            "reason": reason,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "key": record.key.decode("utf-8", "replace") if record.key else None,
            "raw": raw.decode("utf-8", "replace"),
            "detected_at": datetime.now(UTC).isoformat(),
        }
    ).encode()


def payload_text(payload: dict[str, Any]) -> str:
    """The payload as compact JSON, non-ASCII escaped like ``json.dumps`` (numbers in the
    shortest form that reads back to the same float), at a tenth of its cost."""
    return to_json(payload, ensure_ascii=True).decode()


def price_fields(kind: str, payload: dict[str, Any]) -> dict[str, Any] | None:
    """The typed price fields of a tick or bar payload, or None (see :data:`PRICE_FIELDS`).

    Gives exactly what Spark's ``from_json`` reads from :func:`payload_text`: numbers as
    floats, a missing field or JSON null as None. Anything else (a bool, a numeric
    string, NaN or an infinity, an integer beyond 2**53, text where a number belongs or
    the reverse) gives None for the whole row, so silver parses that payload's JSON and
    judges it as it always has.
    """
    if kind not in _PRICE_KINDS:
        return None
    out: dict[str, Any] = {}
    for name in _NUMBER_FIELDS:
        v = payload.get(name)
        if v is None:
            out[name] = None
        elif type(v) is float:
            if not math.isfinite(v):
                return None
            out[name] = v
        elif type(v) is int:
            if abs(v) > _MAX_EXACT_INT:
                return None  # Jackson and Python may round a huge integer differently
            out[name] = float(v)
        else:
            return None
    for name in _TEXT_FIELDS:
        v = payload.get(name)
        if v is not None and type(v) is not str:
            return None
        out[name] = v
    return out


#: Integers up to this convert to the same double everywhere.
_MAX_EXACT_INT = 2**53


def split_batch(records: Sequence[Record]) -> tuple[pa.Table, list[tuple[Record, str]]]:
    """Validate a batch: a bronze table of the good messages, and the bad ones with reasons."""
    table, rejected = split_rows([(r.topic, r.partition, r.offset, r.key, r.value) for r in records])
    return table, [(records[i], reason) for i, reason in rejected]


def split_rows(rows: Sequence[Row]) -> tuple[pa.Table, list[tuple[int, str]]]:
    """``split_batch`` on plain rows; the rejected ones are given by their index."""
    cols: list[list[Any]] = [[] for _ in BRONZE_SCHEMA.names]
    (c_topic, c_partition, c_offset, c_key, c_source, c_kind, c_asset, c_event, c_ingest,
     c_version, c_payload, c_fields) = cols
    rejected: list[tuple[int, str]] = []
    for i, (topic, partition, offset, key, value) in enumerate(rows):
        try:
            env = decode_fields(value or b"")
        except InvalidMessage as e:
            rejected.append((i, e.reason))
            continue
        c_topic.append(topic)
        c_partition.append(partition)
        c_offset.append(offset)
        c_key.append(key.decode("utf-8", "replace") if key else None)
        c_source.append(env["source"])
        c_kind.append(env["kind"])
        c_asset.append(env["asset_id"])
        c_event.append(env["event_time"])
        c_ingest.append(env["ingest_time"])
        c_version.append(env["schema_version"])
        c_payload.append(payload_text(env["payload"]))
        c_fields.append(price_fields(env["kind"], env["payload"]))
    table = pa.Table.from_arrays(
        [pa.array(c, type=f.type) for c, f in zip(cols, BRONZE_SCHEMA, strict=True)],
        schema=BRONZE_SCHEMA,
    )
    return table, rejected


def write_bronze(table: pa.Table, lake_root: str | Path, topic: str, *,
                 written_at: datetime | None = None) -> lake.LakePath:
    """Write one batch's bronze table as a new file of ``topic``'s current hour partition
    (local folder or S3, see :mod:`core.lake`); returns where, once it is durable."""
    path = lake.bronze_file_path(lake_root, topic, written_at or datetime.now(UTC))
    return lake.write_parquet_atomic(table, path)


@dataclass
class SinkStats:
    messages: int = 0
    files: int = 0
    dead_lettered: int = 0
    last_flush: float | None = None
    errors: dict[str, int] = field(default_factory=dict)


class BronzeSink:
    """Consumes one raw topic into bronze Parquet; ``poll_once`` is one step of its loop."""

    GROUP_ID = "bronze-sink"

    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        lake_root: str | Path,
        flush_records: int = 50_000,
        flush_s: float = 2.0,
    ) -> None:
        self.topic = topic
        self.lake_root = lake_root
        self.flush_records = flush_records
        self.flush_s = flush_s
        self.consumer = broker.assigned_consumer(bootstrap, topic, group_id=self.GROUP_ID)
        self.dlq = broker.producer(bootstrap, client_id=f"{self.GROUP_ID}-dlq")
        self.stats = SinkStats()
        self._buffer: list[Row] = []
        self._buffer_since = time.monotonic()

    def poll_once(self, timeout_ms: int = 500) -> int:
        """Poll once and flush if the buffer is full or old enough; return records flushed."""
        room = self.flush_records - len(self._buffer)
        if room > 0:  # a full buffer (a flush that keeps failing) stops consuming
            messages = self.consumer.consume(num_messages=min(room, 100_000),
                                             timeout=timeout_ms / 1000)
            append = self._buffer.append
            for m in messages:
                if m.error() is None:
                    append((m.topic(), m.partition(), m.offset(), m.key(), m.value()))
                else:
                    self._count_error(m)
        due = time.monotonic() - self._buffer_since >= self.flush_s
        if self._buffer and (len(self._buffer) >= self.flush_records or due):
            return self.flush()
        if not self._buffer:
            self._buffer_since = time.monotonic()
        return 0

    def _count_error(self, message: confluent_kafka.Message) -> None:
        err = message.error()
        self.stats.errors[err.name()] = self.stats.errors.get(err.name(), 0) + 1
        log.warning("%s: consumer error: %s", self.topic, err.str())

    def flush(self) -> int:
        """Write the buffer to bronze and dead-letter, then commit its offsets.

        On an error the buffer is kept, so the next flush tries the same messages again
        (and, at worst, writes some of them twice, which silver deduplicates).
        """
        records = self._buffer
        table, rejected = split_rows(records)
        for i, reason in rejected:
            record = Received(*records[i])
            self.dlq.send(broker.DEAD_LETTER, key=record.key,
                          value=dead_letter_message(record, reason, stage="bronze"))
        if rejected:
            log.warning("%d message(s) from %s sent to dead-letter, e.g. %s",
                        len(rejected), self.topic, rejected[0][1])
        if table.num_rows:
            write_bronze(table, self.lake_root, self.topic)
            self.stats.files += 1
        self.dlq.flush()
        # Only now is every message of the batch durable (file or dead-letter).
        self._commit(records)
        self._buffer = []
        self._buffer_since = time.monotonic()
        self.stats.messages += len(records)
        self.stats.dead_lettered += len(rejected)
        self.stats.last_flush = time.time()
        return len(records)

    def _commit(self, records: Sequence[Row]) -> None:
        # Each partition's messages arrive in offset order, so the last one seen is the highest.
        last = {(topic, partition): offset for topic, partition, offset, _, _ in records}
        done = self.consumer.commit(
            offsets=[confluent_kafka.TopicPartition(t, p, o + 1) for (t, p), o in last.items()],
            asynchronous=False,
        )
        failed = [tp for tp in done or () if tp.error is not None]
        if failed:
            raise ServiceUnavailable(f"{self.topic}: offset commit failed for partition "
                                     f"{failed[0].partition}: {failed[0].error}")

    def close(self) -> None:
        try:
            if self._buffer:
                self.flush()
        finally:
            self.consumer.close()
            self.dlq.close()
