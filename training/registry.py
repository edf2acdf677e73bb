"""The model registry: versioned model artifacts in the lake with their metrics, and the
one promoted version per kind that serving should use.

    <lake>/models/<kind>/<version>/…     the artifact's files, copied at registration
    model_versions                       one row per version (core/migrations/0006)

A version is ``<kind>-<UTC yyyymmddTHHMMSS>-<first 8 hex of the artifact's sha256>``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from numbers import Real
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import fsspec

from core import lake
from core.errors import NotFound, RegistryError

if TYPE_CHECKING:
    from training.lstm import LSTMForecaster

log = logging.getLogger(__name__)

# The kind becomes a folder name in the lake and the version's prefix.
_KIND = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_COLUMNS = "version, kind, artifact_uri, metrics, params, created_at, promoted_at"


@dataclass(frozen=True)
class ModelVersion:
    version: str
    kind: str
    artifact_uri: str
    metrics: dict
    params: dict
    created_at: datetime
    promoted_at: datetime | None


def _from_row(row: asyncpg.Record) -> ModelVersion:
    return ModelVersion(version=row["version"], kind=row["kind"],
                        artifact_uri=row["artifact_uri"], metrics=json.loads(row["metrics"]),
                        params=json.loads(row["params"]), created_at=row["created_at"],
                        promoted_at=row["promoted_at"])


def _read_tree(fs: fsspec.AbstractFileSystem, root: str) -> dict[str, bytes]:
    """Every file under ``root`` by its path relative to ``root``."""
    fs.invalidate_cache(root)  # another process may have written there since
    if not fs.isdir(root):
        return {}
    return {path[len(root):].lstrip("/"): fs.cat_file(path) for path in sorted(fs.find(root))}


def _write_tree(fs: fsspec.AbstractFileSystem, root: str, files: Mapping[str, bytes]) -> None:
    for rel, data in files.items():
        path = f"{root}/{rel}"
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        fs.pipe_file(path, data)


def _digest(files: Mapping[str, bytes]) -> str:
    # Names are hashed too, so renaming a file makes a different artifact.
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode() + b"\0" + hashlib.sha256(files[rel]).digest())
    return h.hexdigest()


def _finite_metrics(metrics: Mapping) -> dict[str, float]:
    out = {}
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            raise RegistryError(f"metric {name!r} is not a finite number: {value!r}")
        out[str(name)] = value if isinstance(value, int) else float(value)
    return out


async def register(conn: asyncpg.Connection, *, kind: str, artifact_dir: str | Path,
                   metrics: Mapping, params: Mapping, lake_url: str) -> ModelVersion:
    """Copy ``artifact_dir`` into the lake and record it as a new, unpromoted version.

    Args:
        conn: The platform's database.
        kind: The model family (``lstm``): versions of one kind compete for promotion.
        artifact_dir: A folder (local path or ``s3://`` URL) holding the artifact's files.
        metrics: Finite numbers the version is judged on (``val_loss``…).
        params: Its hyperparameters (JSON values).
        lake_url: The lake (``Settings.lake_root``).

    Raises:
        RegistryError: A bad kind, a missing or empty folder, a non-finite metric, or
            the same artifact registered within the same second.
    """
    if not _KIND.match(kind):
        raise RegistryError(f"bad model kind {kind!r}: lower-case letters, digits and _")
    clean_metrics = _finite_metrics(metrics)
    try:
        params_json = json.dumps(dict(params), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise RegistryError(f"params are not plain JSON values: {e}") from e
    src_fs, src_root = lake.filesystem(artifact_dir)
    files = _read_tree(src_fs, src_root)
    if not files:
        raise RegistryError(f"no artifact files in {artifact_dir} (missing or empty folder)")
    created_at = datetime.now(UTC)
    version = f"{kind}-{created_at:%Y%m%dT%H%M%S}-{_digest(files)[:8]}"
    if await conn.fetchval("SELECT 1 FROM model_versions WHERE version = $1", version):
        raise RegistryError(f"{version} is already registered")
    uri = lake.join(lake_url, "models", kind, version)
    uri = str(uri.absolute()) if isinstance(uri, Path) else uri
    dst_fs, dst_root = lake.filesystem(uri)
    # Files first, row second: a version in the table always has its whole artifact.
    _write_tree(dst_fs, dst_root, files)
    row = await conn.fetchrow(
        f"""INSERT INTO model_versions (version, kind, artifact_uri, metrics, params, created_at)
            VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6)
            RETURNING {_COLUMNS}""",
        version, kind, uri, json.dumps(clean_metrics), params_json, created_at)
    log.info("registered %s at %s", version, uri)
    return _from_row(row)


async def promote(conn: asyncpg.Connection, version: str) -> ModelVersion:
    """Make ``version`` its kind's promoted version, demoting the one before it.

    Raises:
        NotFound: No such version.
    """
    async with conn.transaction():
        kind = await conn.fetchval(
            "SELECT kind FROM model_versions WHERE version = $1 FOR UPDATE", version)
        if kind is None:
            raise NotFound(f"unknown model version {version!r}")
        # Two promotions of one kind at once would otherwise both demote the old version
        # and then collide on the one-promoted index; one waits for the other instead.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('model_versions:' || $1))",
                           kind)
        await conn.execute(
            """UPDATE model_versions SET promoted_at = NULL
               WHERE kind = $1 AND promoted_at IS NOT NULL AND version <> $2""", kind, version)
        row = await conn.fetchrow(
            f"""UPDATE model_versions SET promoted_at = coalesce(promoted_at, now())
                WHERE version = $1 RETURNING {_COLUMNS}""", version)
    log.info("promoted %s", version)
    return _from_row(row)


async def promoted(conn: asyncpg.Connection, kind: str) -> ModelVersion | None:
    """The promoted version of ``kind``, if any."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM model_versions WHERE kind = $1 AND promoted_at IS NOT NULL",
        kind)
    return _from_row(row) if row else None


async def versions(conn: asyncpg.Connection, kind: str | None = None) -> list[ModelVersion]:
    """Registered versions (of ``kind``, or all), newest first."""
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM model_versions WHERE $1::text IS NULL OR kind = $1
            ORDER BY created_at DESC, version DESC""", kind)
    return [_from_row(r) for r in rows]


def load_lstm(mv: ModelVersion) -> tuple[LSTMForecaster, dict]:
    """The version's LSTM on the CPU and its checkpoint state (``config``, ``scalers``…).

    Raises:
        RegistryError: The version is not an LSTM or its artifact is gone.
    """
    import torch

    from training import lstm

    if mv.kind != "lstm":
        raise RegistryError(f"{mv.version} is a {mv.kind} model, not an lstm")
    fs, root = lake.filesystem(mv.artifact_uri)
    files = _read_tree(fs, root)
    if not files:
        raise RegistryError(f"the artifact of {mv.version} is missing at {mv.artifact_uri}")
    # torch.load wants a local file, and the model is in memory once loaded.
    with tempfile.TemporaryDirectory(prefix="rwa-model-") as tmp:
        _write_tree(fsspec.filesystem("file"), Path(tmp).as_posix(), files)
        return lstm.load_model(tmp, device=torch.device("cpu"))
