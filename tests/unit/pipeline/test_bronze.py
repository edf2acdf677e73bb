import json
from dataclasses import dataclass
from datetime import UTC, datetime

from core.envelope import make
from pipeline.bronze import BRONZE_SCHEMA, dead_letter_message, split_batch


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
