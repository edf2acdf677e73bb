"""Silver news for the analytics jobs: the rows Spark wrote to the lake's news dataset,
read with pyarrow (news is small; the jobs run in Ray actors, not in Spark)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from core import lake

#: The silver news columns the sentiment and risk jobs use.
NEWS_COLUMNS = ("event_time", "source", "asset_id", "assets", "title", "url", "outlet")


def read_silver_news(lake_root: str | Path, *, since: datetime) -> list[dict[str, Any]]:
    """Silver news rows with ``event_time >= since`` (aware, UTC), oldest first; none while
    the dataset does not exist yet. Date partitions before ``since`` are not read."""
    folder = lake.silver_dir(lake_root, "news")
    files = lake.list_parquet(folder)
    if not files:
        return []
    fs = None
    paths, base = [str(f) for f in files], str(folder)
    if lake.is_remote(folder):  # s3fs through fsspec, as the rest of the lake code
        fs, _ = lake.filesystem(folder)
        paths, base = [p.split("://", 1)[1] for p in paths], base.split("://", 1)[1]
    dates = ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive")
    dataset = ds.dataset(paths, format="parquet", partitioning=dates, partition_base_dir=base,
                         filesystem=fs)
    names = set(dataset.schema.names)
    columns = [c for c in NEWS_COLUMNS if c in names]
    earliest_day = (since - timedelta(days=1)).date()
    condition = ds.field("event_time") >= since
    if "date" in names:
        condition = condition & (ds.field("date") >= earliest_day.isoformat())
    table = dataset.to_table(columns=columns, filter=condition)
    rows = table.sort_by("event_time").to_pylist()
    for row in rows:
        row.setdefault("assets", [])
    return rows
