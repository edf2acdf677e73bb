"""The model registry against the real embedded PostgreSQL (pgserver) and a local lake:
registration of real LSTM checkpoints, promotion with demotion, loading a version back,
refusals, the `rwa models` commands, and the training job registering its result."""

from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import numpy as np
import pytest
import torch
from pydantic import SecretStr
from typer.testing import CliRunner

from core import db, lake
from core.errors import NotFound, RegistryError
from core.settings import Settings
from rwa.cli import app
from tests.databases import fresh_database
from training import lstm, registry, train_job

pytestmark = pytest.mark.integration

VERSION = re.compile(r"^lstm-\d{8}T\d{6}-[0-9a-f]{8}$")
HISTORY = 100.0 * np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.01, 40)))
METRICS = {"val_loss": 0.91, "naive_val_loss": 1.0, "epoch": 3}
PARAMS = {"lookback": 6, "hidden_size": 4, "lr": 0.005}


@pytest.fixture
async def db_uri(pg_uri: str) -> AsyncIterator[str]:
    """A new, migrated database."""
    async with fresh_database(pg_uri, "registry") as uri:
        conn = await asyncpg.connect(uri)
        try:
            await db.migrate(conn)
        finally:
            await conn.close()
        yield uri


@pytest.fixture
async def conn(db_uri: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(db_uri)
    try:
        yield conn
    finally:
        await conn.close()


def _checkpoint(directory: Path, seed: int) -> tuple[Path, lstm.LSTMForecaster, lstm.Scaler]:
    """An untrained LSTM (weights from ``seed``) saved as a training checkpoint."""
    torch.manual_seed(seed)
    model = lstm.LSTMForecaster(hidden_size=4)
    scaler = lstm.Scaler(mean=0.0005, std=0.012)
    directory.mkdir(parents=True)
    lstm.save_checkpoint(directory, model=model, optimizer=None, epoch=3,
                         config={"lookback": 6, "hidden_size": 4}, scalers={"asset-0": scaler})
    return directory, model, scaler


@pytest.fixture
def checkpoints(tmp_path: Path) -> list[tuple[Path, lstm.LSTMForecaster, lstm.Scaler]]:
    return [_checkpoint(tmp_path / f"ckpt-{seed}", seed) for seed in (1, 2)]


@pytest.fixture
def lake_url(tmp_path: Path) -> str:
    return str(tmp_path / "lake")


async def _register(conn: asyncpg.Connection, artifact: Path, lake_url: str, *,
                    metrics: dict | None = None, kind: str = "lstm") -> registry.ModelVersion:
    return await registry.register(conn, kind=kind, artifact_dir=artifact,
                                   metrics=metrics or METRICS, params=PARAMS, lake_url=lake_url)


async def _promoted_versions(conn: asyncpg.Connection, kind: str = "lstm") -> list[str]:
    return [r["version"] for r in await conn.fetch(
        "SELECT version FROM model_versions WHERE kind = $1 AND promoted_at IS NOT NULL", kind)]


async def test_the_migration_allows_one_promoted_version_per_kind(
        conn: asyncpg.Connection) -> None:
    columns = {r["column_name"]: r["data_type"] for r in await conn.fetch(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'model_versions'")}
    assert columns == {"version": "text", "kind": "text", "artifact_uri": "text",
                       "metrics": "jsonb", "params": "jsonb",
                       "created_at": "timestamp with time zone",
                       "promoted_at": "timestamp with time zone"}
    assert await db.migrate(conn) == []  # applied once; a second run changes nothing
    insert = ("INSERT INTO model_versions (version, kind, artifact_uri, promoted_at) "
              "VALUES ($1, $2, 'x', $3)")
    await conn.execute(insert, "a-1", "a", datetime.now(UTC))
    await conn.execute(insert, "b-1", "b", datetime.now(UTC))  # another kind: allowed
    await conn.execute(insert, "a-2", "a", None)  # unpromoted: allowed
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute(insert, "a-3", "a", datetime.now(UTC))


async def test_register_copies_the_artifact_and_records_an_unpromoted_version(
        conn: asyncpg.Connection, checkpoints, lake_url: str) -> None:
    (first_dir, _, _), (second_dir, _, _) = checkpoints
    first = await _register(conn, first_dir, lake_url)
    second = await _register(conn, second_dir, lake_url)

    for mv, source in ((first, first_dir), (second, second_dir)):
        assert VERSION.match(mv.version), mv.version
        assert mv.artifact_uri == str(Path(lake_url, "models", "lstm", mv.version).absolute())
        copied = Path(mv.artifact_uri) / lstm.CHECKPOINT_FILE
        assert copied.read_bytes() == (source / lstm.CHECKPOINT_FILE).read_bytes()
        assert (mv.kind, mv.metrics, mv.params, mv.promoted_at) == ("lstm", METRICS, PARAMS, None)
        assert mv.created_at.tzinfo is not None
    # The version ends with the artifact's hash: different weights, different suffix.
    assert first.version[-8:] != second.version[-8:]
    assert await registry.versions(conn, "lstm") == [second, first]  # newest first
    assert await registry.versions(conn) == [second, first]
    assert await registry.versions(conn, "arima") == []
    assert await registry.promoted(conn, "lstm") is None


async def test_the_same_artifact_in_the_same_second_is_refused(
        conn: asyncpg.Connection, checkpoints, lake_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    class FrozenClock(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)

    monkeypatch.setattr(registry, "datetime", FrozenClock)
    (first_dir, _, _), _ = checkpoints
    mv = await _register(conn, first_dir, lake_url)
    assert mv.version.startswith("lstm-20260302T120000-")
    copy = first_dir.with_name("same-bytes")
    shutil.copytree(first_dir, copy)
    with pytest.raises(RegistryError, match="already registered"):
        await _register(conn, copy, lake_url, metrics={"val_loss": 0.5})
    assert [v.metrics for v in await registry.versions(conn)] == [METRICS]


async def test_promotion_demotes_the_kinds_previous_version(
        conn: asyncpg.Connection, checkpoints, lake_url: str) -> None:
    (first_dir, _, _), (second_dir, _, _) = checkpoints
    first = await _register(conn, first_dir, lake_url)
    second = await _register(conn, second_dir, lake_url)
    other = await _register(conn, first_dir, lake_url, kind="other")
    await registry.promote(conn, other.version)

    promoted_first = await registry.promote(conn, first.version)
    assert promoted_first.version == first.version and promoted_first.promoted_at is not None
    assert await registry.promoted(conn, "lstm") == promoted_first

    promoted_second = await registry.promote(conn, second.version)
    assert promoted_second.promoted_at is not None
    assert await registry.promoted(conn, "lstm") == promoted_second
    assert await _promoted_versions(conn) == [second.version]
    by_version = {v.version: v for v in await registry.versions(conn, "lstm")}
    assert by_version[first.version].promoted_at is None
    # Promoting the promoted version again keeps it as it was.
    assert await registry.promote(conn, second.version) == promoted_second
    # Other kinds are left alone.
    assert await _promoted_versions(conn, "other") == [other.version]


async def test_load_lstm_forecasts_like_the_original_model(
        conn: asyncpg.Connection, checkpoints, lake_url: str) -> None:
    (first_dir, model, scaler), _ = checkpoints
    mv = await _register(conn, first_dir, lake_url)
    expected = lstm.forecast(model, HISTORY, 5, lookback=6, scaler=scaler)
    shutil.rmtree(first_dir)  # the lake's copy is what gets loaded

    loaded, state = registry.load_lstm(mv)
    assert next(loaded.parameters()).device.type == "cpu"
    lookback = state["config"]["lookback"]
    got = lstm.forecast(loaded, HISTORY, 5, lookback=lookback,
                        scaler=state["scalers"]["asset-0"])
    assert lookback == 6
    np.testing.assert_array_equal(got, expected)
    # A different version holds a different model.
    other, _ = registry.load_lstm(await _register(conn, checkpoints[1][0], lake_url))
    assert not np.array_equal(
        lstm.forecast(other, HISTORY, 5, lookback=6, scaler=scaler), expected)


async def test_promoting_an_unknown_version_is_an_error_that_changes_nothing(
        conn: asyncpg.Connection, checkpoints, lake_url: str) -> None:
    mv = await _register(conn, checkpoints[0][0], lake_url)
    await registry.promote(conn, mv.version)
    with pytest.raises(NotFound, match="unknown model version 'lstm-nope'"):
        await registry.promote(conn, "lstm-nope")
    assert await _promoted_versions(conn) == [mv.version]


@pytest.mark.parametrize("metrics", [{"val_loss": math.nan}, {"val_loss": math.inf},
                                     {"val_loss": -math.inf}, {"val_loss": "0.5"},
                                     {"val_loss": None}, {"ok": 1.0, "val_loss": np.nan}])
async def test_bad_metrics_are_refused(conn: asyncpg.Connection, checkpoints, lake_url: str,
                                       metrics: dict) -> None:
    with pytest.raises(RegistryError, match="val_loss"):
        await _register(conn, checkpoints[0][0], lake_url, metrics=metrics)
    assert await registry.versions(conn) == []
    assert not Path(lake_url).exists()  # nothing copied either


async def test_a_missing_or_empty_artifact_or_bad_kind_is_refused(
        conn: asyncpg.Connection, tmp_path: Path, checkpoints, lake_url: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for artifact in (empty, tmp_path / "missing"):
        with pytest.raises(RegistryError, match="no artifact files"):
            await _register(conn, artifact, lake_url)
    with pytest.raises(RegistryError, match="bad model kind"):
        await _register(conn, checkpoints[0][0], lake_url, kind="../lstm")
    assert await registry.versions(conn) == []


def _rwa(db_uri: str, home: Path, *argv: str):
    """``rwa …`` on a worker thread: the command runs its own event loop."""
    env = {"DATABASE_URL": db_uri, "RWA_DATABASE_URL": db_uri, "RWA_HOME": str(home)}
    return asyncio.to_thread(CliRunner().invoke, app, list(argv), env=env)


async def test_cli_lists_and_promotes(conn: asyncpg.Connection, db_uri: str, tmp_path: Path,
                                      checkpoints, lake_url: str) -> None:
    first = await _register(conn, checkpoints[0][0], lake_url)
    second = await _register(conn, checkpoints[1][0], lake_url)

    listed = await _rwa(db_uri, tmp_path, "models", "list", "--json")
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [r["version"] for r in rows] == [second.version, first.version]
    assert rows[0]["metrics"] == METRICS and rows[0]["params"] == PARAMS
    assert rows[0]["promoted_at"] is None

    promoted = await _rwa(db_uri, tmp_path, "models", "promote", first.version)
    assert promoted.exit_code == 0, promoted.output
    assert first.version in promoted.stdout
    assert await _promoted_versions(conn) == [first.version]

    promoted = await _rwa(db_uri, tmp_path, "models", "promote", second.version)
    assert promoted.exit_code == 0, promoted.output
    assert await _promoted_versions(conn) == [second.version]

    listed = await _rwa(db_uri, tmp_path, "models", "list", "--kind", "lstm", "--json")
    assert [r["promoted_at"] is not None for r in json.loads(listed.stdout)] == [True, False]
    other = await _rwa(db_uri, tmp_path, "models", "list", "--kind", "arima", "--json")
    assert other.exit_code == 0 and json.loads(other.stdout) == []
    table = await _rwa(db_uri, tmp_path, "models", "list")
    assert table.exit_code == 0 and first.version in table.stdout

    unknown = await _rwa(db_uri, tmp_path, "models", "promote", "lstm-nope")
    assert unknown.exit_code == 2
    assert "unknown model version 'lstm-nope'" in unknown.stderr
    assert "Traceback" not in unknown.output
    assert isinstance(unknown.exception, SystemExit)
    assert await _promoted_versions(conn) == [second.version]


async def test_the_training_job_registers_and_promotes_its_checkpoint(
        conn: asyncpg.Connection, db_uri: str, checkpoints, lake_url: str) -> None:
    settings = Settings(database_url=SecretStr(db_uri), lake_url=lake_url)
    ckpt = str(checkpoints[0][0])
    version = await asyncio.to_thread(train_job.register_checkpoint, settings,
                                      checkpoint=ckpt, metrics=METRICS, params=PARAMS,
                                      promote=True)
    assert VERSION.match(version)
    assert (await registry.promoted(conn, "lstm")).version == version

    no_db = Settings(database_url=None, lake_url=lake_url)
    assert train_job.register_checkpoint(no_db, checkpoint=ckpt, metrics=METRICS,
                                         params=PARAMS) is None
    bad = str(checkpoints[1][0])
    with pytest.raises(RegistryError, match=f"checkpoint {bad} was not registered: .*val_loss"):
        await asyncio.to_thread(train_job.register_checkpoint, settings, checkpoint=bad,
                                metrics={"val_loss": math.nan}, params=PARAMS)
    assert [v.version for v in await registry.versions(conn)] == [version]


@pytest.fixture
def s3_lake(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A lake under a prefix of a fresh bucket on moto's S3 server (loopback)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for name, value in (("AWS_ACCESS_KEY_ID", "test-key"), ("AWS_SECRET_ACCESS_KEY", "test"),
                        ("AWS_DEFAULT_REGION", "us-east-1"),
                        ("AWS_ENDPOINT_URL", f"http://{host}:{port}")):
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    fs, _ = lake.filesystem("s3://models")
    fs.mkdir("models")
    try:
        yield "s3://models/prime"
    finally:
        server.stop()


async def test_an_s3_lake_holds_versions_registered_from_s3_checkpoints(
        conn: asyncpg.Connection, checkpoints, s3_lake: str) -> None:
    (first_dir, model, scaler), _ = checkpoints
    # Ray keeps checkpoints of an S3 run on S3: register straight from there.
    fs, _ = lake.filesystem(s3_lake)
    fs.put(str(first_dir / lstm.CHECKPOINT_FILE), "models/runs/ckpt/" + lstm.CHECKPOINT_FILE)
    mv = await _register(conn, "s3://models/runs/ckpt", s3_lake)
    assert mv.artifact_uri == f"{s3_lake}/models/lstm/{mv.version}"
    fs.invalidate_cache()
    assert fs.cat_file(f"models/prime/models/lstm/{mv.version}/{lstm.CHECKPOINT_FILE}") == \
        (first_dir / lstm.CHECKPOINT_FILE).read_bytes()
    loaded, state = registry.load_lstm(mv)
    np.testing.assert_array_equal(
        lstm.forecast(loaded, HISTORY, 5, lookback=6, scaler=state["scalers"]["asset-0"]),
        lstm.forecast(model, HISTORY, 5, lookback=6, scaler=scaler))
    with pytest.raises(RegistryError, match="no artifact files"):
        await _register(conn, "s3://models/runs/none", s3_lake)


@pytest.mark.slow
async def test_a_training_run_registers_its_checkpoint(
        local_ray, conn: asyncpg.Connection, db_uri: str, tmp_path: Path,
        lake_url: str) -> None:
    settings = Settings(database_url=SecretStr(db_uri), lake_url=lake_url, home=tmp_path)
    args = train_job.parse_args(["--synthetic", "2", "--days", "80", "--epochs", "1",
                                 "--workers", "1", "--cpus-per-worker", "0.5", "--gpu", "no",
                                 "--promote"])
    out = await asyncio.to_thread(train_job.run, args, settings)

    mv = await registry.promoted(conn, "lstm")
    assert mv is not None and out["model_version"] == mv.version
    assert mv.metrics["val_loss"] == out["metrics"]["val_loss"] and mv.metrics["epoch"] == 1
    assert mv.params["lookback"] == 20 and mv.params["epochs"] == 1
    model, state = registry.load_lstm(mv)
    trained, _ = lstm.load_model(out["checkpoint_path"], device=torch.device("cpu"))
    series = train_job.synthetic_series(2, days=80)["sim-0"]
    scaler = state["scalers"]["sim-0"]
    np.testing.assert_array_equal(lstm.forecast(model, series, 3, lookback=20, scaler=scaler),
                                  lstm.forecast(trained, series, 3, lookback=20, scaler=scaler))
