import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from core import broker
from core.envelope import make
from pipeline.bronze import (
    BRONZE_SCHEMA,
    BronzeSink,
    dead_letter_message,
    payload_text,
    split_batch,
    split_rows,
)


@dataclass
class FakeRecord:
    value: bytes | None
    topic: str = "price-data-raw"
    partition: int = 0
    offset: int = 0
    key: bytes | None = b"paxg"


def _good(i: int) -> bytes:
    return make(source="simulated", kind="tick", asset_id="paxg",
                event_time=datetime(2026, 1, 1, 0, i, tzinfo=UTC),
                payload={"price": 100.0 + i, "volume": 1.0}).to_bytes()


def test_batch_splits_into_bronze_rows_and_rejects_with_reasons() -> None:
    records = [FakeRecord(_good(0), offset=0), FakeRecord(b"garbage", offset=1),
               FakeRecord(_good(1), offset=2), FakeRecord(None, offset=3)]
    table, rejected = split_batch(records)
    assert table.schema == BRONZE_SCHEMA
    assert table.column("offset").to_pylist() == [0, 2]
    assert [json.loads(p)["price"] for p in table.column("payload").to_pylist()] == [100.0, 101.0]
    assert [(r.offset, reason.split(":")[0]) for r, reason in rejected] == [(1, "not JSON"), (3, "not JSON")]


def test_dead_letter_keeps_origin_reason_and_raw_bytes() -> None:
    letter = json.loads(dead_letter_message(FakeRecord(b"\xffoops", offset=7), "not JSON", stage="bronze"))
    assert letter["offset"] == 7 and letter["topic"] == "price-data-raw"
    assert letter["reason"] == "not JSON" and letter["stage"] == "bronze"
    assert "oops" in letter["raw"]


def test_rows_keep_envelope_fields_in_utc_and_the_payload_as_sent() -> None:
    raw = json.loads(_good(5))
    raw["event_time"] = "2026-01-01T02:05:00+02:00"
    raw["payload"] = {"price": 7, "volume": 0.5, "nav": 7.01}
    rows = [("price-data-raw", 2, 41, b"paxg", json.dumps(raw).encode()),
            ("price-data-raw", 1, 9, None, b"[]")]
    table, rejected = split_rows(rows)
    row = table.to_pylist()[0]
    assert (row["partition"], row["offset"], row["key"], row["kind"]) == (2, 41, "paxg", "tick")
    assert row["event_time"] == datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    assert json.loads(row["payload"]) == {"price": 7, "volume": 0.5, "nav": 7.01}
    assert rejected == [(1, "not a JSON object")]


@pytest.mark.parametrize("payload", [
    {"price": 2650.123456789, "volume": 0, "nav": None},
    {"title": "Fonds \u00e9largi \u4e2d \"quoted\" \\ \n", "assets": ["a", "b"], "lang": "fr"},
    {"series": "US.CPI", "value": -1.5e-7, "unit": None},
])
def test_payload_text_is_compact_json_escaped_like_json_dumps(payload: dict) -> None:
    text = payload_text(payload)
    assert json.loads(text) == payload
    assert text.isascii() and ", " not in text and ": " not in text
    if "value" not in payload:  # json.dumps writes small floats with an exponent
        assert text == json.dumps(payload, separators=(",", ":"))


@dataclass
class FakeMessage:
    _value: bytes | None
    _partition: int
    _offset: int
    _error: object = None

    def topic(self) -> str:
        return "price-data-raw"

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"paxg"

    def value(self) -> bytes | None:
        return self._value

    def error(self) -> object:
        return self._error


class FakeConsumer:
    def __init__(self, batches: list[list[FakeMessage]]) -> None:
        self.batches = batches
        self.commits: list[list[tuple[int, int]]] = []
        self.fail_commit = False

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        return self.batches.pop(0) if self.batches else []

    def commit(self, *, offsets, asynchronous: bool):
        assert not asynchronous
        if self.fail_commit:
            raise RuntimeError("broker gone")
        self.commits.append(sorted((tp.partition, tp.offset) for tp in offsets))
        return offsets

    def close(self) -> None:
        pass


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.flushed = 0

    def send(self, topic: str, *, key: bytes | None, value: bytes) -> None:
        self.sent.append((topic, value))

    def flush(self) -> None:
        self.flushed = len(self.sent)

    def close(self) -> None:
        pass


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    consumer, dlq = FakeConsumer([]), FakeProducer()
    monkeypatch.setattr(broker, "assigned_consumer", lambda *a, **k: consumer)
    monkeypatch.setattr(broker, "producer", lambda *a, **k: dlq)
    return BronzeSink(bootstrap="unused:9092", topic="price-data-raw", lake_root=tmp_path,
                      flush_records=4, flush_s=60)


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.parquet"))


def test_sink_writes_dead_letters_then_commits_the_next_offset_per_partition(sink) -> None:
    sink.consumer.batches = [
        [FakeMessage(_good(0), 0, 10), FakeMessage(b"garbage", 1, 3)],
        [FakeMessage(_good(1), 0, 11), FakeMessage(_good(2), 1, 4)],
    ]
    assert sink.poll_once() == 0  # 2 buffered, below flush_records
    assert sink.poll_once() == 4
    [path] = _files(sink.lake_root)
    assert pq.read_table(path).column("offset").to_pylist() == [10, 11, 4]
    assert sink.dlq.flushed == 1 and json.loads(sink.dlq.sent[0][1])["offset"] == 3
    assert sink.consumer.commits == [[(0, 12), (1, 5)]]
    assert (sink.stats.messages, sink.stats.files, sink.stats.dead_lettered) == (4, 1, 1)


def test_sink_keeps_its_batch_when_the_commit_fails_and_retries_it(sink) -> None:
    sink.consumer.batches = [[FakeMessage(_good(i), 0, i) for i in range(4)]]
    sink.consumer.fail_commit = True
    with pytest.raises(RuntimeError):
        sink.poll_once()
    assert sink.consumer.commits == [] and sink.stats.messages == 0
    sink.consumer.fail_commit = False
    assert sink.poll_once() == 4  # nothing new consumed while the buffer is full
    assert sink.consumer.commits == [[(0, 4)]]
    assert len(_files(sink.lake_root)) == 2  # written twice; silver deduplicates


def test_sink_counts_consumer_errors_and_skips_them(sink) -> None:
    class Err:
        def name(self) -> str:
            return "_TRANSPORT"

        def str(self) -> str:
            return "connection lost"

    sink.consumer.batches = [[FakeMessage(None, 0, -1, Err()), FakeMessage(_good(0), 0, 0)]]
    sink.poll_once()
    sink.close()
    assert sink.stats.errors == {"_TRANSPORT": 1} and sink.stats.messages == 1


def test_price_fields_type_plain_payloads_and_leave_the_rest_to_json() -> None:
    from pipeline.bronze import PRICE_FIELDS, price_fields

    got = price_fields("bar", {"open": 1, "high": 2.5, "low": 0.5, "close": 2.0, "volume": 3,
                               "interval": "1h", "extra": {"x": 1}})
    assert got == {"open": 1.0, "high": 2.5, "low": 0.5, "close": 2.0, "price": None,
                   "volume": 3.0, "nav": None, "interval": "1h", "currency": None}
    assert list(got) == [f.name for f in PRICE_FIELDS]
    assert price_fields("onchain", {"holder_count": 5}) is None
    for odd in ({"price": True}, {"price": "1.5"}, {"price": float("nan")},
                {"volume": float("-inf")}, {"price": 2**60}, {"interval": 5},
                {"currency": ["USD"]}):
        assert price_fields("tick", odd) is None, odd
