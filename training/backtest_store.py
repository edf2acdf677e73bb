"""Backtest runs, their scores and the ensemble calibrations, in PostgreSQL (0007)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from training import ensemble
from training.backtest import Score


async def start_run(conn: asyncpg.Connection, *, source: str, model_version: str,
                    horizons: Sequence[int], params: Mapping[str, Any]) -> int:
    return await conn.fetchval(
        """INSERT INTO backtest_runs (source, model_version, horizons, params)
           VALUES ($1, $2, $3, $4::jsonb) RETURNING run_id""",
        source, model_version, list(horizons), json.dumps(dict(params)))


async def save_scores(conn: asyncpg.Connection, run_id: int, series_id: str, target: str,
                      scores: Sequence[Score]) -> None:
    await conn.executemany(
        """INSERT INTO backtest_scores (run_id, series_id, target, model, horizon, mase, smape,
               coverage_80, coverage_95, n)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
           ON CONFLICT (run_id, series_id, target, model, horizon) DO UPDATE
           SET mase = EXCLUDED.mase, smape = EXCLUDED.smape, coverage_80 = EXCLUDED.coverage_80,
               coverage_95 = EXCLUDED.coverage_95, n = EXCLUDED.n""",
        [(run_id, series_id, target, s.model, s.horizon, s.mase, s.smape, s.coverage_80,
          s.coverage_95, s.n) for s in scores])


async def finish_run(conn: asyncpg.Connection, run_id: int) -> None:
    await conn.execute("UPDATE backtest_runs SET finished_at = now() WHERE run_id = $1", run_id)


async def latest_scorecards(conn: asyncpg.Connection, series_ids: Sequence[str],
                            ) -> dict[tuple[str, str], dict[int, dict]]:
    """Per (series, target), per horizon: each model's scores from its latest finished run.

    Shaped for serving: ``{horizon: {"run_id", "ensemble": {...}, "naive": {...}, …}}``.
    """
    rows = await conn.fetch(
        """WITH latest AS (
               SELECT DISTINCT ON (s.series_id, s.target) s.series_id, s.target, s.run_id
               FROM backtest_scores s JOIN backtest_runs r USING (run_id)
               WHERE s.series_id = ANY($1::text[]) AND r.finished_at IS NOT NULL
               ORDER BY s.series_id, s.target, s.run_id DESC)
           SELECT s.*, r.finished_at FROM backtest_scores s
           JOIN latest l USING (series_id, target, run_id)
           JOIN backtest_runs r USING (run_id)""",
        list(series_ids))
    out: dict[tuple[str, str], dict[int, dict]] = {}
    for r in rows:
        card = out.setdefault((r["series_id"], r["target"]), {}).setdefault(
            r["horizon"], {"run_id": r["run_id"], "backtested_at": r["finished_at"].isoformat()})
        card[r["model"]] = {"mase": r["mase"], "smape": r["smape"],
                            "coverage_80": r["coverage_80"], "coverage_95": r["coverage_95"],
                            "n": r["n"]}
    return out


async def save_calibration(conn: asyncpg.Connection, asset_id: str, target: str,
                           model_version: str, calibration: ensemble.Calibration) -> None:
    await conn.execute(
        """INSERT INTO forecast_calibrations (asset_id, target, model_version, calibration)
           VALUES ($1, $2, $3, $4::jsonb)
           ON CONFLICT (asset_id, target) DO UPDATE
           SET model_version = EXCLUDED.model_version, calibration = EXCLUDED.calibration,
               computed_at = now()""",
        asset_id, target, model_version, json.dumps(calibration.to_json()))


async def load_calibrations(conn: asyncpg.Connection, asset_ids: Sequence[str],
                            ) -> dict[tuple[str, str], tuple[str, ensemble.Calibration, datetime]]:
    rows = await conn.fetch(
        """SELECT asset_id, target, model_version, calibration, computed_at
           FROM forecast_calibrations WHERE asset_id = ANY($1::text[])""", list(asset_ids))
    return {(r["asset_id"], r["target"]): (
        r["model_version"], ensemble.Calibration.from_json(json.loads(r["calibration"])),
        r["computed_at"]) for r in rows}
