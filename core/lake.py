"""Lake layout and the one way files enter it: written aside, then renamed into place,
so a reader never sees a half-written Parquet file.

    <lake>/bronze/<topic>/date=YYYY-MM-DD/hour=HH/part-<time>-<uuid>.parquet
    <lake>/silver/<dataset>/date=YYYY-MM-DD/part-….parquet      (written by Spark)
    <lake>/gold/<dataset>/batch=<id>/part-….parquet              (Spark → PostgreSQL hand-off)
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def bronze_dir(lake_root: str | Path, topic: str) -> Path:
    return Path(lake_root) / "bronze" / topic


def silver_dir(lake_root: str | Path, dataset: str) -> Path:
    return Path(lake_root) / "silver" / dataset


def gold_dir(lake_root: str | Path, dataset: str) -> Path:
    return Path(lake_root) / "gold" / dataset


def bronze_file_path(lake_root: str | Path, topic: str, written_at: datetime) -> Path:
    partition = bronze_dir(lake_root, topic) / (
        f"date={written_at:%Y-%m-%d}" f"/hour={written_at:%H}"
    )
    return partition / f"part-{written_at:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:12]}.parquet"


def write_parquet_atomic(table: pa.Table, path: Path) -> Path:
    """Write ``table`` to ``path`` durably: temp file, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def list_parquet(root: Path) -> list[Path]:
    """Complete Parquet files under ``root`` (hidden temp files excluded), oldest first."""
    if not root.exists():
        return []
    return sorted(p for p in root.rglob("*.parquet") if not p.name.startswith("."))
