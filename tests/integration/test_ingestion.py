"""Ingestion on the running platform: every keyless source reaches bronze, operators
see each actor's figures, and a killed ingestion actor comes back by itself with no
gap and no duplicate in what it published."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from core import broker, lake
from tests.integration.conftest import Platform, wait_until

pytestmark = pytest.mark.integration

ONCHAIN_ACTOR = "ingest-simulated-onchain"
ONCHAIN_SOURCE = "simulated-onchain"
BACK_WITHIN_S = 10
TE_ACTOR = "ingest-tradingeconomics"


def _bronze_rows(plat: Platform, topic: str, columns: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in lake.list_parquet(lake.bronze_dir(plat.lake_root, topic)):
        rows += pq.read_table(path, columns=columns).to_pylist()
    return rows


def test_every_kind_of_keyless_source_reaches_bronze(platform: Platform) -> None:
    expected = {broker.PRICE_RAW: {"bar", "tick"}, broker.ONCHAIN_RAW: {"onchain"},
                broker.ECONOMIC_RAW: {"macro"}, broker.NEWS_RAW: {"news"}}

    def landed() -> dict[str, set[str]] | None:
        kinds = {t: {r["kind"] for r in _bronze_rows(platform, t, ["kind"])} for t in expected}
        return kinds if all(kinds[t] >= expected[t] for t in expected) else None

    kinds = wait_until(landed, timeout_s=240, what="all four raw topics in bronze", interval_s=2)
    assert kinds[broker.NEWS_RAW] == {"news"}
    macro = _bronze_rows(platform, broker.ECONOMIC_RAW, ["source", "payload"])
    assert "statsmodels-macrodata" in {r["source"] for r in macro}
    assert any(json.loads(r["payload"])["series"] == "US.CPI" for r in macro)


def _rwa(plat: Platform, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "rwa"), *args], env=plat.env,
                          capture_output=True, text=True, timeout=timeout_s)


def test_ingest_status_and_metrics_show_each_source(platform: Platform) -> None:
    def all_reporting() -> list[dict[str, Any]] | None:
        out = _rwa(platform, "ingest", "status", "--json")
        rows = json.loads(out.stdout) if out.returncode == 0 else []
        sending = [r for r in rows if r["ray_state"] == "ALIVE" and (r["sent"] or 0) > 0]
        return rows if len(sending) == 5 else None

    rows = wait_until(all_reporting, timeout_s=180, what="every source sending", interval_s=3)
    by_actor = {r["actor"]: r for r in rows}
    assert set(by_actor) == {"ingest-simulated", ONCHAIN_ACTOR, "ingest-simulated-news",
                             "ingest-us-macro", TE_ACTOR}
    onchain = by_actor[ONCHAIN_ACTOR]
    assert onchain["state"] in ("caught_up", "catching_up")
    assert onchain["lag_s"] is not None and onchain["lag_s"] < 120
    assert datetime.fromisoformat(onchain["last_event_time"]) > datetime.now(UTC) - timedelta(
        minutes=5)

    text = httpx.get(f"{platform.api_url}/metrics", timeout=10).text
    assert (f'rwa_ingest_messages_total{{actor="{ONCHAIN_ACTOR}",source="{ONCHAIN_SOURCE}"}}'
            in text)
    assert 'rwa_actor_up{actor="ingest-us-macro"} 1.0' in text


@pytest.fixture(scope="module")
def ray_client(platform: Platform) -> Iterator[Any]:
    """A driver on the platform's Ray, which requires its token (~/.ray/auth_token).

    Ray reads its auth mode once, when first imported, and another test module may have
    imported it already: the mode is set and Ray's cached config reloaded here, and both
    put back afterwards, so a later test's own local Ray starts without auth as usual.
    """
    import ray
    from ray._private.authentication_test_utils import reset_auth_token_state

    previous = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "token"
    reset_auth_token_state()
    ray.init(address=platform.ray_address, namespace="rwa", log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        if previous is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = previous
        reset_auth_token_state()


def _actor_state(plat: Platform, name: str) -> Any:
    from ray.util.state import list_actors

    alive = list_actors(address=plat.ray_address, detail=True, filters=[("name", "=", name),
                                                           ("state", "=", "ALIVE")],
                        raise_on_missing_output=False)
    return alive[0] if alive else None


def _wait_back(plat: Platform, restarts: int) -> float:
    started = time.monotonic()

    def back() -> bool:
        a = _actor_state(plat, ONCHAIN_ACTOR)
        return a is not None and a.num_restarts >= restarts

    wait_until(back, timeout_s=BACK_WITHIN_S, what=f"{ONCHAIN_ACTOR} alive again",
               interval_s=0.2)
    return time.monotonic() - started


def test_killed_ingestion_actor_is_back_without_gap_or_duplicate(
        platform: Platform, ray_client: Any) -> None:
    wait_until(lambda: _actor_state(platform, ONCHAIN_ACTOR), timeout_s=180,
               what="the on-chain source actor")
    before = _actor_state(platform, ONCHAIN_ACTOR).num_restarts
    time.sleep(2)  # a few one-second windows published before the first kill

    handle = ray_client.get_actor(ONCHAIN_ACTOR)
    ray_client.kill(handle, no_restart=False)
    _wait_back(platform, before + 1)

    time.sleep(2)
    pid = _actor_state(platform, ONCHAIN_ACTOR).pid
    os.kill(pid, signal.SIGKILL)  # the operating system's kill, not Ray's
    _wait_back(platform, before + 2)
    resumed_at = datetime.now(UTC)

    def times_by_asset() -> dict[str, list[datetime]] | None:
        by_asset: dict[str, list[datetime]] = defaultdict(list)
        for r in _bronze_rows(platform, broker.ONCHAIN_RAW,
                              ["source", "asset_id", "event_time"]):
            if r["source"] == ONCHAIN_SOURCE:
                by_asset[r["asset_id"]].append(r["event_time"])
        newest = min((max(ts) for ts in by_asset.values()), default=None)
        return by_asset if newest and newest > resumed_at + timedelta(seconds=10) else None

    by_asset = wait_until(times_by_asset, timeout_s=120, what="windows after the restarts",
                          interval_s=1)
    window_start = resumed_at - timedelta(seconds=60)
    for asset_id, times in by_asset.items():
        recent = sorted(t for t in times if t >= window_start)
        assert len(recent) == len(set(recent)), f"{asset_id}: a window was published twice"
        gaps = [b - a for a, b in zip(recent, recent[1:]) if b - a != timedelta(seconds=1)]
        assert not gaps, f"{asset_id}: windows missing around the kills: {gaps[:3]}"
        assert len(recent) > 20


def _ingest_row(plat: Platform, actor: str) -> dict[str, Any] | None:
    out = _rwa(plat, "ingest", "status", "--json")
    rows = json.loads(out.stdout) if out.stdout.strip() else []
    return next((r for r in rows if r["actor"] == actor), None)


def test_a_failing_provider_is_counted_dead_lettered_and_survived(platform: Platform) -> None:
    from kafka import KafkaConsumer, TopicPartition

    from tests.fakes.server import HTML_ERROR_PAGE

    def te_in_bronze() -> list[dict[str, Any]] | None:
        rows = [r for r in _bronze_rows(platform, broker.ECONOMIC_RAW, ["source", "payload"])
                if r["source"] == "tradingeconomics"]
        return rows if len(rows) >= 7 else None

    rows = wait_until(te_in_bronze, timeout_s=180, what="Trading Economics rows in bronze",
                      interval_s=2)
    assert {json.loads(r["payload"])["series"] for r in rows} >= {"US.POLICY_RATE", "US.CPI_YOY"}
    before = wait_until(lambda: _ingest_row(platform, TE_ACTOR), timeout_s=60,
                        what="the provider's status row")

    platform.te.fail_next(200, HTML_ERROR_PAGE, headers={"Content-Type": "text/html"})
    platform.te.fail_next(503, "upstream down", times=8)

    def counted() -> dict[str, Any] | None:
        row = _ingest_row(platform, TE_ACTOR)
        errors = (row or {}).get("errors_by_kind") or {}
        return row if errors.get("bad_response") and errors.get("unavailable") else None

    row = wait_until(counted, timeout_s=90, what="both failures counted", interval_s=1)
    assert row["ray_state"] == "ALIVE" and row["restarts"] == before["restarts"]

    consumer = KafkaConsumer(bootstrap_servers=platform.kafka_bootstrap,
                             enable_auto_commit=False, consumer_timeout_ms=1000)
    parts = [TopicPartition(broker.DEAD_LETTER, p)
             for p in consumer.partitions_for_topic(broker.DEAD_LETTER)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    letters: list[dict[str, Any]] = []

    def html_dead_lettered() -> dict[str, Any] | None:
        letters.extend(json.loads(r.value) for r in consumer)
        return next((d for d in letters if d.get("source") == "tradingeconomics"), None)

    letter = wait_until(html_dead_lettered, timeout_s=60, what="the HTML page in dead-letter")
    consumer.close()
    assert "expected JSON" in letter["reason"] and "Bad Gateway" in letter["raw"]
    assert "s3cr3t" not in json.dumps(letter)

    # Once the provider answers again the actor is back to work by itself.
    wait_until(lambda: (_ingest_row(platform, TE_ACTOR) or {}).get("state") == "caught_up",
               timeout_s=90, what="the provider source caught up again", interval_s=1)


def test_pipeline_report_and_backfill_commands(platform: Platform) -> None:
    def reported() -> dict[str, Any] | None:
        out = _rwa(platform, "pipeline", "report", "--json")
        report = json.loads(out.stdout) if out.returncode == 0 else None
        ok = report and report["gold"]["price_data"] > 0 and report["stream"].get("batch_id") \
            is not None
        return report if ok else None

    report = wait_until(reported, timeout_s=240, what="a pipeline report with gold", interval_s=3)
    assert report["bronze"][broker.PRICE_RAW]["rows"] > 0
    assert report["silver"]["prices"]["rows"] > 0
    assert report["stream"]["stream"] == "active" and report["stream"]["lag_s"] is not None
    assert "paxg" in report["freshness"]

    # One hour of the month of history: the backfill reads only the files whose event-time
    # statistics overlap it (the history's), and skips every live file.
    hour = (datetime.now(UTC) - timedelta(days=10)).replace(minute=0, second=0, microsecond=0)
    # Its own local Spark, started beside the whole platform's on two cores: minutes.
    out = _rwa(platform, "pipeline", "run", "--from", hour.isoformat(),
               "--to", (hour + timedelta(hours=1)).isoformat(), timeout_s=900)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # Idempotent: whatever the stream already put in silver is not written again.
    assert result["bronze_rows"] >= 32
    assert result["unreadable"] == 0 and result["skipped"] > 0
