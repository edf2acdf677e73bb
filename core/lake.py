"""Lake layout and the one way files enter it: a reader never sees a half-written
Parquet file.

    <lake>/bronze/<topic>/date=YYYY-MM-DD/hour=HH/part-<time>-<uuid>.parquet
    <lake>/silver/<dataset>/date=YYYY-MM-DD/part-….parquet      (written by Spark)
    <lake>/gold/<dataset>/batch=<id>/part-….parquet              (Spark → PostgreSQL hand-off)

The lake is a local folder, or S3 when its URL is ``s3://bucket/prefix``
(``Settings.lake_root``). On a local lake the path helpers return ``Path`` and a file is
written aside, fsynced and renamed into place; on S3 they return ``s3://…`` strings and a
file is one PUT (S3 shows an object only once it is whole, so the final key is written
directly).

S3 is reached through fsspec/s3fs with the standard AWS configuration: credentials from
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (or a profile, or the instance/pod role),
the region from ``AWS_DEFAULT_REGION``, and an S3-compatible endpoint (MinIO, a local
test server) from ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``. Ray workers do not
inherit the driver's environment: on a cluster these variables belong in the pods'
environment (or the job's ``runtime_env``).

Spark reads only local paths here (the pyspark wheel has no hadoop-aws jars), so with
an S3 lake it works on a local mirror; see :mod:`pipeline.lake_mirror`.
"""

from __future__ import annotations

import io
import os
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

#: A place in the lake: a ``Path`` on a local lake, an ``s3://bucket/key`` URL on S3.
LakePath = Path | str

S3_SCHEME = "s3://"


def is_remote(lake_path: str | Path) -> bool:
    """Whether ``lake_path`` is in an S3 lake rather than a local folder."""
    return isinstance(lake_path, str) and lake_path.startswith(S3_SCHEME)


def _s3_options() -> dict[str, Any]:
    # botocore honours these too, but not every version does for AWS_ENDPOINT_URL_S3;
    # passing the endpoint explicitly makes a MinIO/test endpoint work the same everywhere.
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return {"endpoint_url": endpoint} if endpoint else {}


def filesystem(lake_root: str | Path, **storage_options: Any,
               ) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem holding ``lake_root`` and the path of ``lake_root`` within it.

    ``s3://bucket/prefix`` gives an s3fs filesystem and ``bucket/prefix``; anything else
    the local filesystem and the folder's path. ``storage_options`` go to s3fs and
    override what the environment says (see the module docstring).
    """
    if is_remote(lake_root):
        import s3fs

        root = str(lake_root).removeprefix(S3_SCHEME).rstrip("/")
        return s3fs.S3FileSystem(**(_s3_options() | storage_options)), root
    return fsspec.filesystem("file"), Path(lake_root).absolute().as_posix()


def join(lake_root: str | Path, *parts: str) -> LakePath:
    """``lake_root``/``parts…``: a ``Path`` locally, an ``s3://`` URL on S3."""
    if is_remote(lake_root):
        return "/".join([str(lake_root).rstrip("/"), *parts])
    return Path(lake_root).joinpath(*parts)


def bronze_dir(lake_root: str | Path, topic: str) -> LakePath:
    return join(lake_root, "bronze", topic)


def silver_dir(lake_root: str | Path, dataset: str) -> LakePath:
    return join(lake_root, "silver", dataset)


def gold_dir(lake_root: str | Path, dataset: str) -> LakePath:
    return join(lake_root, "gold", dataset)


def bronze_file_path(lake_root: str | Path, topic: str, written_at: datetime) -> LakePath:
    return join(bronze_dir(lake_root, topic), f"date={written_at:%Y-%m-%d}",
                 f"hour={written_at:%H}",
                 f"part-{written_at:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:12]}.parquet")


def write_parquet_atomic(table: pa.Table, path: LakePath) -> LakePath:
    """Write ``table`` to ``path`` durably: on S3 one PUT of the whole file, locally a
    temp file, fsync, rename. Returns ``path`` once the file is there."""
    if is_remote(path):
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        fs, key = filesystem(path)
        fs.pipe_file(key, buf.getvalue())
        return path
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def is_data_file(name: str) -> bool:
    """A finished Parquet file's name: not hidden or a temp/marker file (``.``/``_``)."""
    return name.endswith(".parquet") and not name.startswith((".", "_"))


def list_parquet(root: LakePath) -> list[Path] | list[str]:
    """Complete Parquet files under ``root`` (hidden temp files excluded), oldest first:
    ``Path``s in a local lake, ``s3://`` URLs in an S3 one."""
    if is_remote(root):
        fs, prefix = filesystem(root)
        fs.invalidate_cache(prefix)  # other processes write here; never trust a listing
        return sorted(S3_SCHEME + key for key in fs.find(prefix)
                      if is_data_file(key.rsplit("/", 1)[-1]))
    root = Path(root)
    if not root.exists():
        return []
    return sorted(p for p in root.rglob("*.parquet") if not p.name.startswith("."))
