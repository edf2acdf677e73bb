"""Streaming silver on a local Spark session against the real embedded PostgreSQL: a job
killed mid-batch leaves every valid row in silver exactly once, a replay of the same
bronze gives identical gold, and a corrupt bronze file is quarantined, not fatal."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core import broker, lake
from core.db import SyncDb
from pipeline import gold
from pipeline.bronze import BRONZE_SCHEMA
from pipeline.prices import process_prices
from pipeline.streaming import quarantine_unreadable, start_silver_stream
from rwa.embedded import EmbeddedPostgres
from rwa.stack import prepare_database

pytestmark = pytest.mark.integration

ASSETS = ["paxg", "xaut", "buidl"]
START = (datetime.now(UTC) - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)


@pytest.fixture(scope="module")
def dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("pg"))
    url = pg.start()
    asyncio.run(prepare_database(url))
    try:
        yield url
    finally:
        pg.stop()


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    from rwa.embedded import find_java_home, use_java

    use_java(find_java_home())
    session = (SparkSession.builder.master("local[1]").appName("streaming-silver")
               .config("spark.sql.session.timeZone", "UTC").config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
               .getOrCreate())
    yield session
    session.stop()


def _bar(asset: str, hour: int, close: float, *, offset: int) -> dict:
    return {"topic": broker.PRICE_RAW, "partition": 0, "offset": offset, "key": asset,
            "source": "simulated", "kind": "bar", "asset_id": asset,
            "event_time": START + timedelta(hours=hour), "ingest_time": START,
            "schema_version": 1,
            "payload": json.dumps({"open": close, "high": close * 1.01, "low": close * 0.99,
                                   "close": close, "volume": 5.0, "interval": "1h"})}


def _write(lake_root: Path, name: str, rows: list[dict]) -> Path:
    folder = lake.bronze_dir(lake_root, broker.PRICE_RAW) / f"date={START.date()}" / "hour=00"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=BRONZE_SCHEMA), path)
    return path


def _valid_rows() -> list[dict]:
    return [_bar(a, h, 100.0 + i * 10 + h, offset=i * 100 + h)
            for i, a in enumerate(ASSETS) for h in range(10)]


def _gold(db: SyncDb) -> list[tuple]:
    return [tuple(r) for r in db.fetch(
        "SELECT asset_id, time, open, high, low, close, volume FROM price_data "
        "WHERE asset_id = ANY($1) ORDER BY asset_id, time", ASSETS)]


def test_stream_killed_mid_batch_keeps_each_valid_row_once(spark, dsn: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from pyspark.errors import StreamingQueryException

    rows = _valid_rows()
    bad = _bar("paxg", 3, 1.0, offset=999) | {"payload": json.dumps(
        {"open": -1.0, "high": 1.0, "low": -2.0, "close": 1.0, "volume": 1.0})}
    _write(tmp_path, "part-a", rows[:20] + [bad])
    _write(tmp_path, "part-b", rows[15:])  # at-least-once delivery: five rows twice
    db = SyncDb(dsn)

    real_load = gold.load_price_bars
    crashed: list[int] = []

    async def killed_after_silver(conn, records, **kw):
        if not crashed:
            crashed.append(len(records))
            raise RuntimeError("worker killed mid-batch")
        return await real_load(conn, records, **kw)

    monkeypatch.setattr(gold, "load_price_bars", killed_after_silver)
    query = start_silver_stream(spark, db, lake_root=str(tmp_path), asset_ids=ASSETS,
                               trigger_s=0.5)
    with pytest.raises(StreamingQueryException, match="killed mid-batch"):
        query.awaitTermination(timeout=180)
    silver_path = lake.silver_dir(tmp_path, "prices")
    assert spark.read.parquet(str(silver_path)).count() == len(rows)  # written before the kill

    again = start_silver_stream(spark, db, lake_root=str(tmp_path), asset_ids=ASSETS,
                               trigger_s=0.5)
    again.processAllAvailable()
    again.stop()

    silver = spark.read.parquet(str(silver_path))
    assert silver.count() == len(rows)
    assert silver.dropDuplicates(["source", "kind", "asset_id", "event_time"]).count() == len(rows)
    stored = _gold(db)
    assert len(stored) == len(rows)
    assert {(r[0], r[1], r[5]) for r in stored} == {
        (r["asset_id"], r["event_time"], json.loads(r["payload"])["close"]) for r in rows}
    rules = db.fetch("SELECT rule, record FROM quarantine WHERE stage = 'silver-prices'")
    assert [r["rule"] for r in rules] == ["non_positive_price"]
    db.close()


def test_replaying_the_same_bronze_gives_identical_gold(spark, dsn: str, tmp_path: Path) -> None:
    path = _write(tmp_path, "replay", [_bar("xaut", h, 2000.0 + h, offset=h) for h in range(24)])
    db = SyncDb(dsn)
    first = process_prices(spark, db, spark.read.parquet(str(path)), lake_root=str(tmp_path),
                           asset_ids=ASSETS)
    gold_once = _gold(db)
    second = process_prices(spark, db, spark.read.parquet(str(path)), lake_root=str(tmp_path),
                            asset_ids=ASSETS)
    assert first.silver_new == 24 and second.silver_new == 0
    assert _gold(db) == gold_once
    db.close()


def test_a_micro_batch_of_one_spike_is_judged_against_stored_silver(
        spark, dsn: str, tmp_path: Path) -> None:
    """A batch holding a single tick has no neighbours of its own: the step borrows the
    stored silver around its hours, so the spike is flagged and a sane tick is not."""
    db = SyncDb(dsn)
    calm = _write(tmp_path, "calm", [_bar("buidl", h, 1.0 + h * 1e-4, offset=h) for h in range(12)])
    process_prices(spark, db, spark.read.parquet(str(calm)), lake_root=str(tmp_path),
                   asset_ids=ASSETS)
    for name, hour, close, flagged in (("spike", 12, 1.6, True), ("sane", 13, 1.0013, False)):
        path = _write(tmp_path, name, [_bar("buidl", hour, close, offset=100 + hour)])
        result = process_prices(spark, db, spark.read.parquet(str(path)),
                                lake_root=str(tmp_path), asset_ids=ASSETS)
        assert result.silver_new == 1  # an outlier is kept in silver, flagged
        row = (spark.read.parquet(str(lake.silver_dir(tmp_path, "prices")))
               .where(f"event_time = '{(START + timedelta(hours=hour)).isoformat()}'").collect())
        assert [r["outlier"] for r in row] == [flagged]
        assert result.quarantined == int(flagged)
    rules = db.fetch("SELECT rule, record FROM quarantine WHERE record LIKE '%1.6%'")
    assert [r["rule"] for r in rules] == ["price_outlier"]
    db.close()


def test_a_corrupt_bronze_file_is_quarantined_and_the_stream_goes_on(
        spark, dsn: str, tmp_path: Path) -> None:
    folder = lake.bronze_dir(tmp_path, broker.PRICE_RAW) / f"date={START.date()}" / "hour=01"
    folder.mkdir(parents=True)
    (folder / "truncated.parquet").write_bytes(b"PAR1\x00\x01garbage")
    _write(tmp_path, "good", [_bar("buidl", h, 1.0, offset=h) for h in range(3)])
    db = SyncDb(dsn)
    query = start_silver_stream(spark, db, lake_root=str(tmp_path), asset_ids=ASSETS,
                               trigger_s=0.5)
    query.processAllAvailable()
    assert query.isActive
    query.stop()
    assert spark.read.parquet(str(lake.silver_dir(tmp_path, "prices"))).count() == 3
    assert quarantine_unreadable(db, str(tmp_path)) == 1
    assert quarantine_unreadable(db, str(tmp_path)) == 0  # each file is checked once
    found = db.fetch("SELECT rule, record FROM quarantine WHERE record LIKE '%truncated.parquet%'")
    assert [r["rule"] for r in found] == ["unreadable_file"]
    db.close()


def _envelope_row(kind: str, asset: str | None, when: datetime, payload: dict, *,
                  source: str = "test", topic: str = broker.ONCHAIN_RAW, offset: int = 0) -> dict:
    return {"topic": topic, "partition": 0, "offset": offset, "key": asset or "", "source": source,
            "kind": kind, "asset_id": asset, "event_time": when, "ingest_time": when,
            "schema_version": 1, "payload": json.dumps(payload)}


def _other_kinds(day: datetime) -> tuple[list[dict], dict[str, str]]:
    """Valid rows of every non-price kind, plus one bad row per kind and its rule."""
    rows = []
    for i, asset in enumerate(ASSETS):
        for h in (1, 13):
            rows.append(_envelope_row("onchain", asset, day + timedelta(hours=h),
                                      {"holder_count": 1000 + i * 10 + h, "transfer_volume": 5.0,
                                       "chain": "ethereum"}, offset=i * 10 + h))
    for q, value in enumerate((5.25, 5.5, 5.5)):
        rows.append(_envelope_row("macro", None, datetime(2024, 1 + 3 * q, 1, tzinfo=UTC),
                                  {"series": "US.POLICY_RATE", "value": value, "unit": "%"},
                                  topic=broker.ECONOMIC_RAW, offset=q))
    for n in range(3):
        rows.append(_envelope_row("news", "paxg", day + timedelta(hours=2, minutes=n),
                                  {"title": f"Gold token story {n}", "url": f"https://x.test/{n}",
                                   "assets": ["paxg"], "issuers": ["Paxos"]},
                                  topic=broker.NEWS_RAW, offset=n))
    bad = {
        "negative_metric": _envelope_row("onchain", "xaut", day + timedelta(hours=3),
                                         {"holder_count": -5}, offset=500),
        "non_finite_value": _envelope_row("macro", None, datetime(2024, 2, 1, tzinfo=UTC),
                                          {"series": "US.CPI", "value": "NaN"},
                                          topic=broker.ECONOMIC_RAW, offset=501),
        "empty_title": _envelope_row("news", "paxg", day + timedelta(hours=4), {"title": ""},
                                     topic=broker.NEWS_RAW, offset=502),
        "unknown_asset": _envelope_row("onchain", "no-such-token", day + timedelta(hours=5),
                                       {"holder_count": 3}, offset=503),
    }
    return rows, {rule: row["payload"] for rule, row in bad.items()} | {
        "_rows": [*bad.values()]}  # type: ignore[dict-item]


def test_every_kind_reaches_gold_and_bad_records_reach_quarantine(spark, dsn: str,
                                                                   tmp_path: Path) -> None:
    from pipeline.cycles import process_batch

    day = (datetime.now(UTC) - timedelta(days=1)).replace(hour=0, minute=0, second=0,
                                                           microsecond=0)
    rows, bad = _other_kinds(day)
    path = _write(tmp_path, "kinds", rows + bad.pop("_rows"))
    db = SyncDb(dsn)
    results = process_batch(spark, db, spark.read.parquet(str(path)), lake_root=str(tmp_path),
                            asset_ids=ASSETS)
    assert set(results) == {"onchain", "macro", "news"}

    def snapshot() -> tuple:
        return (
            [tuple(r) for r in db.fetch(
                "SELECT asset_id, time, holder_count FROM onchain_metrics WHERE asset_id = ANY($1)"
                " ORDER BY 1, 2", ASSETS)],
            [tuple(r) for r in db.fetch(
                "SELECT series, time, value FROM macro_series WHERE series = 'US.POLICY_RATE' "
                "ORDER BY 2")],
            [tuple(r) for r in db.fetch(
                "SELECT asset_id, time, article_count FROM sentiment_scores WHERE source = 'test'")],
        )

    onchain, macro, news = snapshot()
    assert [(a, t) for a, t, _ in onchain] == [(a, day) for a in sorted(ASSETS)]
    assert [h for _, _, h in onchain] == [1033, 1013, 1023]  # buidl, paxg, xaut: day's last
    assert [v for _, _, v in macro] == [5.25, 5.5, 5.5]
    assert news == [("paxg", day + timedelta(hours=2), 3)]

    found = {r["rule"]: r["record"] for r in db.fetch(
        "SELECT rule, record FROM quarantine WHERE stage LIKE 'silver-%' AND record LIKE '%test%'")}
    for rule, payload in bad.items():
        assert rule in found, f"no {rule} in quarantine: {sorted(found)}"
        assert json.loads(json.loads(found[rule])["payload"]) == json.loads(payload)

    again = process_batch(spark, db, spark.read.parquet(str(path)), lake_root=str(tmp_path),
                          asset_ids=ASSETS)
    assert all(r.silver_new == 0 for r in again.values())
    assert snapshot() == (onchain, macro, news)
    quarantined = db.fetchval("SELECT count(*) FROM quarantine WHERE stage LIKE 'silver-%' "
                              "AND record LIKE '%test%'")
    assert quarantined == len(bad)  # a replay adds nothing to quarantine either
    db.close()


def test_the_pipeline_connection_backend_runs_below_the_live_path(dsn: str) -> None:
    import os

    from actors.base import BATCH_NICENESS, deprioritise_db_backend

    db = SyncDb(dsn)
    assert deprioritise_db_backend(db, dsn)
    pid = db.fetchval("SELECT pg_backend_pid()")
    assert os.getpriority(os.PRIO_PROCESS, pid) >= BATCH_NICENESS
    # Each backend is a session of its own: its scheduling group is lowered too, or
    # its niceness would rank it only against itself.
    autogroup = Path(f"/proc/{pid}/autogroup")
    if autogroup.exists():
        assert int(autogroup.read_text().split()[-1]) >= BATCH_NICENESS
    db.close()
