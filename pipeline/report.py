"""``rwa pipeline report``: what each stage of the lake holds and how fresh it is."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from core import broker, lake
from core.db import SyncDb

GOLD_TABLES = ("price_data", "onchain_metrics", "sentiment_scores")


def _parquet_rows(root: Path) -> tuple[int, int]:
    """(files, rows) of the Parquet files under ``root``, from their footers only."""
    files = rows = 0
    for path in lake.list_parquet(root):
        try:
            rows += pq.read_metadata(path).num_rows
            files += 1
        except Exception:  # unreadable files are counted by the quarantine instead
            continue
    return files, rows


def collect(db: SyncDb, lake_root: str) -> dict[str, Any]:
    """Rows per stage and kind, quarantine counts by rule, freshness per asset."""
    bronze = {}
    for topic in broker.RAW_TOPICS:
        files, rows = _parquet_rows(lake.bronze_dir(lake_root, topic))
        bronze[topic] = {"files": files, "rows": rows}
    silver_root = Path(lake_root) / "silver"
    silver = {d.name: dict(zip(("files", "rows"), _parquet_rows(d), strict=True))
              for d in sorted(silver_root.iterdir()) if d.is_dir()} if silver_root.exists() else {}
    gold = {t: db.fetchval(f"SELECT count(*) FROM {t}") for t in GOLD_TABLES}
    quarantine = {f"{r['stage']}/{r['rule']}": r["n"] for r in db.fetch(
        "SELECT stage, rule, count(*) AS n FROM quarantine GROUP BY stage, rule "
        "ORDER BY stage, rule")}
    now = datetime.now(UTC)
    freshness = {r["asset_id"]: {"latest_bar": r["latest"].isoformat(),
                                 "age_s": round((now - r["latest"]).total_seconds())}
                 for r in db.fetch("SELECT asset_id, max(time) AS latest FROM price_data "
                                   "GROUP BY asset_id ORDER BY asset_id")}
    return {"bronze": bronze, "silver": silver, "gold": gold, "quarantine": quarantine,
            "freshness": freshness}
