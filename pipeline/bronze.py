"""Bronze: raw topic → immutable Parquet in the lake, at least once.

The sink polls a batch, validates each message against the envelope contract, sends
the invalid ones to ``dead-letter`` with the reason, writes the valid ones as one
Parquet file, and only then commits the Kafka offsets. A crash before the commit
replays the batch; silver deduplicates on natural keys, so nothing is lost or doubled.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from core import broker, lake
from core.envelope import decode
from core.errors import InvalidMessage

log = logging.getLogger(__name__)

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
    ]
)


class Record(Protocol):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


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


def split_batch(records: list[Record]) -> tuple[pa.Table, list[tuple[Record, str]]]:
    """Validate a batch: a bronze table of the good messages, and the bad ones with reasons."""
    cols: dict[str, list[Any]] = {name: [] for name in BRONZE_SCHEMA.names}
    rejected: list[tuple[Record, str]] = []
    for r in records:
        try:
            env = decode(r.value or b"")
        except InvalidMessage as e:
            rejected.append((r, e.reason))
            continue
        cols["topic"].append(r.topic)
        cols["partition"].append(r.partition)
        cols["offset"].append(r.offset)
        cols["key"].append(r.key.decode("utf-8", "replace") if r.key else None)
        cols["source"].append(env.source)
        cols["kind"].append(env.kind)
        cols["asset_id"].append(env.asset_id)
        cols["event_time"].append(env.event_time)
        cols["ingest_time"].append(env.ingest_time)
        cols["schema_version"].append(env.schema_version)
        cols["payload"].append(json.dumps(env.payload, separators=(",", ":")))
    return pa.Table.from_pydict(cols, schema=BRONZE_SCHEMA), rejected


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
        self._buffer: list[Record] = []
        self._buffer_since = time.monotonic()

    def poll_once(self, timeout_ms: int = 500) -> int:
        """Poll once and flush if the buffer is full or old enough; return records flushed."""
        batches = self.consumer.poll(timeout_ms=timeout_ms)
        for records in batches.values():
            self._buffer.extend(records)
        due = time.monotonic() - self._buffer_since >= self.flush_s
        if self._buffer and (len(self._buffer) >= self.flush_records or due):
            return self.flush()
        if not self._buffer:
            self._buffer_since = time.monotonic()
        return 0

    def flush(self) -> int:
        records, self._buffer = self._buffer, []
        self._buffer_since = time.monotonic()
        table, rejected = split_batch(records)
        for record, reason in rejected:
            self.dlq.send(broker.DEAD_LETTER, key=record.key,
                          value=dead_letter_message(record, reason, stage="bronze"))
        if rejected:
            log.warning("%d message(s) from %s sent to dead-letter, e.g. %s",
                        len(rejected), self.topic, rejected[0][1])
        if table.num_rows:
            path = lake.bronze_file_path(self.lake_root, self.topic, datetime.now(UTC))
            lake.write_parquet_atomic(table, path)
            self.stats.files += 1
        self.dlq.flush()
        # Only now is every message of the batch durable (file or dead-letter).
        self.consumer.commit()
        self.stats.messages += len(records)
        self.stats.dead_lettered += len(rejected)
        self.stats.last_flush = time.time()
        return len(records)

    def close(self) -> None:
        if self._buffer:
            self.flush()
        self.consumer.close()
        self.dlq.close()
