"""The lake on S3 (and on a local folder, the same tests): writes, listings, the bronze
sink's files, and the local mirror Spark reads. S3 is moto's server, a real
S3-compatible HTTP server on loopback, reached through s3fs exactly as a real bucket is
(credentials and endpoint from the standard AWS variables)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs
from moto.server import ThreadedMotoServer

from core import broker, lake
from core.envelope import make
from pipeline import lake_mirror
from pipeline.bronze import BRONZE_SCHEMA, BronzeSink, split_rows, write_bronze

pytestmark = pytest.mark.integration

TOPIC = broker.PRICE_RAW
T0 = datetime(2026, 1, 1, 5, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return s3_endpoint


@pytest.fixture
def s3_lake(s3_env: str) -> str:
    """A fresh bucket; the lake under a prefix in it."""
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    fs, _ = lake.filesystem(f"s3://{bucket}")
    fs.mkdir(bucket)
    return f"s3://{bucket}/prime"


@pytest.fixture(params=["local", "s3"])
def lake_root(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    return tmp_path / "lake" if request.param == "local" else request.getfixturevalue("s3_lake")


def _table(n: int, start: int = 0) -> pa.Table:
    rows = [(TOPIC, 0, start + i, b"paxg",
             make(source="simulated", kind="tick", asset_id="paxg",
                  event_time=datetime(2026, 1, 1, 0, i % 60, tzinfo=UTC),
                  payload={"price": 100.0 + i, "volume": 1.0}).to_bytes())
            for i in range(n)]
    table, rejected = split_rows(rows)
    assert not rejected
    return table


def _read(path: lake.LakePath) -> pa.Table:
    fs, key = lake.filesystem(path)
    return pq.read_table(key, filesystem=fs)


def test_filesystem_is_s3fs_at_the_env_endpoint_for_s3_urls(s3_env: str,
                                                             tmp_path: Path) -> None:
    fs, root = lake.filesystem("s3://bucket/some/prefix/")
    assert isinstance(fs, s3fs.S3FileSystem) and root == "bucket/some/prefix"
    assert fs.endpoint_url == s3_env
    local_fs, local_root = lake.filesystem(tmp_path / "lake")
    assert local_fs.protocol[0] == "file" and local_root == (tmp_path / "lake").as_posix()
    assert lake.bronze_dir("s3://bucket/p/", TOPIC) == f"s3://bucket/p/bronze/{TOPIC}"
    assert lake.silver_dir(tmp_path, "prices") == tmp_path / "silver" / "prices"


def test_write_then_list_round_trip(lake_root: str | Path) -> None:
    topic_dir = lake.bronze_dir(lake_root, TOPIC)
    assert lake.list_parquet(topic_dir) == []  # nothing written yet, not an error
    paths = [lake.write_parquet_atomic(_table(3, start=i * 3),
                                       lake.bronze_file_path(lake_root, TOPIC, T0))
             for i in range(2)]
    # Temp and marker files in the folder are not data.
    fs, root = lake.filesystem(topic_dir)
    fs.pipe_file(f"{root}/date=2026-01-01/hour=05/.part-x.parquet.tmp", b"partial")
    fs.pipe_file(f"{root}/date=2026-01-01/hour=05/.part-y.parquet", b"partial")

    listed = lake.list_parquet(topic_dir)
    assert listed == sorted(paths)
    if lake.is_remote(lake_root):
        assert all(isinstance(p, str) and p.startswith(f"{lake_root}/bronze/") for p in listed)
    else:
        assert all(isinstance(p, Path) and p.exists() for p in listed)
    offsets = sorted(o for p in listed for o in _read(p).column("offset").to_pylist())
    assert offsets == list(range(6))


def test_bronze_file_goes_to_s3_and_reads_back_with_pyarrow(s3_lake: str) -> None:
    table = _table(5)
    path = write_bronze(table, s3_lake, TOPIC, written_at=T0)
    assert isinstance(path, str)
    assert path.startswith(f"{s3_lake}/bronze/{TOPIC}/date=2026-01-01/hour=05/part-20260101T0530")
    back = _read(path)
    assert back.schema == BRONZE_SCHEMA and back.equals(table)
    assert json.loads(back.column("payload")[4].as_py())["price"] == 104.0


class _Message:
    def __init__(self, value: bytes, offset: int) -> None:
        self._value, self._offset = value, offset

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"paxg"

    def value(self) -> bytes:
        return self._value


class _Consumer:
    def __init__(self, messages: list[_Message]) -> None:
        self.messages = messages
        self.commits: list[list[tuple[int, int]]] = []

    def consume(self, num_messages: int, timeout: float) -> list[_Message]:
        taken, self.messages = self.messages, []
        return taken

    def commit(self, *, offsets: list, asynchronous: bool) -> list:
        self.commits.append([(tp.partition, tp.offset) for tp in offsets])
        return offsets

    def close(self) -> None:
        pass


class _Producer:
    def send(self, topic: str, *, key: bytes | None, value: bytes) -> None:
        raise AssertionError("no message here is invalid")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_sink_commits_only_after_the_object_is_in_s3(s3_lake: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    values = [_Message(make(source="simulated", kind="tick", asset_id="paxg", event_time=T0,
                            payload={"price": 1.0 + i, "volume": 1.0}).to_bytes(), 40 + i)
              for i in range(3)]
    consumer = _Consumer(values)
    monkeypatch.setattr(broker, "assigned_consumer", lambda *a, **k: consumer)
    monkeypatch.setattr(broker, "producer", lambda *a, **k: _Producer())
    missing = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/prime"
    sink = BronzeSink(bootstrap="unused:9092", topic=TOPIC, lake_root=missing,
                      flush_records=3, flush_s=60)
    with pytest.raises(FileNotFoundError):  # the PUT fails: nothing is committed
        sink.poll_once()
    assert consumer.commits == [] and sink.stats.files == 0

    sink.lake_root = s3_lake
    assert sink.poll_once() == 3  # the kept batch, retried
    assert consumer.commits == [[(0, 43)]]
    [path] = lake.list_parquet(lake.bronze_dir(s3_lake, TOPIC))
    assert _read(path).column("offset").to_pylist() == [40, 41, 42]


def _local_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_mirror_copies_each_bronze_file_once_with_its_layout(lake_root: str | Path,
                                                              tmp_path: Path) -> None:
    written = [write_bronze(_table(2, start=0), lake_root, TOPIC, written_at=T0),
               write_bronze(_table(2, start=2), lake_root, TOPIC, written_at=T0),
               write_bronze(_table(2, start=4), lake_root, TOPIC,
                            written_at=T0.replace(hour=6))]
    mirror = tmp_path / "mirror" / "bronze" / TOPIC

    assert lake_mirror.mirror_bronze(lake_root, TOPIC, mirror) == 3
    assert lake_mirror.mirror_bronze(lake_root, TOPIC, mirror) == 0
    names = _local_files(mirror)  # no temp file left behind either
    assert names == sorted(str(p).rsplit(f"/bronze/{TOPIC}/", 1)[1] for p in written)
    assert [n.split("/")[:2] for n in names] == [["date=2026-01-01", "hour=05"]] * 2 + [
        ["date=2026-01-01", "hour=06"]]
    for path, name in zip(sorted(written), names, strict=True):
        assert pq.read_table(mirror / name).equals(_read(path))

    # A new file in the current hour, and a late one in an hour long past.
    new = write_bronze(_table(1, start=6), lake_root, TOPIC, written_at=T0.replace(hour=7))
    late = write_bronze(_table(1, start=7), lake_root, TOPIC,
                        written_at=T0.replace(day=1, hour=0))
    assert lake_mirror.mirror_bronze(lake_root, TOPIC, mirror) == 1
    assert (mirror / str(new).rsplit(f"/bronze/{TOPIC}/", 1)[1]).exists()
    assert lake_mirror.mirror_bronze(lake_root, TOPIC, mirror, lookback=None) == 1
    assert pq.read_table(mirror / str(late).rsplit(f"/bronze/{TOPIC}/", 1)[1]).equals(
        _read(late))
    assert lake_mirror.mirror_bronze(lake_root, TOPIC, mirror, lookback=None) == 0


def test_mirror_of_an_empty_topic_copies_nothing(lake_root: str | Path,
                                                 tmp_path: Path) -> None:
    assert lake_mirror.mirror_bronze(lake_root, TOPIC, tmp_path / "mirror") == 0


def _spark_like_output(folder: Path, name: str, table: pa.Table) -> None:
    """A data file as Spark leaves it, with its checksum beside it."""
    pq.write_table(table, folder / name)
    (folder / f".{name}.crc").write_bytes(b"crc")


def test_upload_tree_uploads_new_silver_files_only(lake_root: str | Path,
                                                   tmp_path: Path) -> None:
    local = tmp_path / "local" / "silver" / "prices"
    for date in ("2026-01-01", "2026-01-02"):
        (local / f"date={date}").mkdir(parents=True)
    _spark_like_output(local / "date=2026-01-01", "part-00000-a.snappy.parquet", _table(2))
    _spark_like_output(local / "date=2026-01-02", "part-00000-b.snappy.parquet", _table(3))
    (local / "_SUCCESS").write_bytes(b"")
    (local / "_temporary" / "0").mkdir(parents=True)  # a write still in progress
    pq.write_table(_table(1), local / "_temporary" / "0" / "part-00001-c.snappy.parquet")

    assert lake_mirror.upload_tree(local, lake_root, "prices") == 2
    assert lake_mirror.upload_tree(local, lake_root, "prices") == 0
    silver = lake.silver_dir(lake_root, "prices")
    remote = lake.list_parquet(silver)
    assert [str(p).rsplit("/silver/prices/", 1)[1] for p in remote] == [
        "date=2026-01-01/part-00000-a.snappy.parquet",
        "date=2026-01-02/part-00000-b.snappy.parquet"]
    assert _read(remote[1]).equals(pq.read_table(local / "date=2026-01-02" /
                                                 "part-00000-b.snappy.parquet"))

    _spark_like_output(local / "date=2026-01-02", "part-00000-d.snappy.parquet", _table(4))
    assert lake_mirror.upload_tree(local, lake_root, "prices") == 1
    assert len(lake.list_parquet(silver)) == 3
    assert lake_mirror.upload_tree(tmp_path / "nothing-here", lake_root, "prices") == 0
