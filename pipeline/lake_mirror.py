"""A local mirror of an S3 lake for Spark: bronze comes down, silver goes up.

Why: the pyspark wheel this project runs has no hadoop-aws / AWS SDK jars (and none can
be downloaded here), so Spark cannot read or write ``s3a://`` paths. The lake itself may
still live on S3 (:mod:`core.lake`); Spark works on a local copy of what it reads and
writes:

    bronze sink ─PUT─▶ s3://…/bronze/<topic>/date=…/hour=…/part-….parquet
    mirror_bronze  ──▶ <local>/bronze/<topic>/date=…/hour=…/part-….parquet  (Spark reads)
    Spark silver   ──▶ <local>/silver/<dataset>/date=…/part-….parquet
    upload_tree    ──▶ s3://…/silver/<dataset>/date=…/part-….parquet

Files arrive in the mirror under a hidden temp name and are renamed into place, so
Spark's file source (which skips names starting with ``.`` or ``_``) never sees a
partial file. Bronze and silver files are immutable with unique names, so "already
copied" is simply "a file of that name is there".

With a JDK image that ships hadoop-aws and its AWS SDK bundle, Spark could read
``s3a://bucket/prefix/bronze/<topic>`` directly and this module would not be needed.
"""

from __future__ import annotations

import logging
import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import fsspec

from core import lake

log = logging.getLogger(__name__)

#: Hidden, so Spark ignores it: the destinations upload_tree has already written.
UPLOAD_MANIFEST = ".uploaded"


def _partition_value(path: str, name: str) -> str | None:
    """``2026-01-01`` from ``…/date=2026-01-01`` when ``name`` is ``date``, else None."""
    base = path.rstrip("/").rsplit("/", 1)[-1]
    key, sep, value = base.partition("=")
    return value if sep and key == name else None


def _newest_local_hour(local: Path) -> datetime | None:
    """The latest ``date=/hour=`` partition of the mirror that holds a data file."""
    for date_dir in sorted(local.glob("date=*"), reverse=True):
        for hour_dir in sorted(date_dir.glob("hour=*"), reverse=True):
            if any(lake.is_data_file(p.name) for p in hour_dir.iterdir()):
                date = _partition_value(date_dir.as_posix(), "date")
                hour = _partition_value(hour_dir.as_posix(), "hour")
                try:
                    return datetime.strptime(f"{date} {hour}", "%Y-%m-%d %H")
                except ValueError:
                    continue
    return None


def _ls(fs: fsspec.AbstractFileSystem, path: str) -> list[str]:
    try:
        return sorted(fs.ls(path, detail=False, refresh=True))
    except FileNotFoundError:
        return []


def _remote_files(fs: fsspec.AbstractFileSystem, root: str, since: datetime | None,
                  ) -> list[str]:
    """Data files under ``root``; with ``since``, only those of hour partitions from
    ``since`` on (a few listings instead of one of the whole topic)."""
    if since is None:
        fs.invalidate_cache(root)
        try:
            found = fs.find(root)
        except FileNotFoundError:
            return []
        return sorted(k for k in found if lake.is_data_file(k.rsplit("/", 1)[-1]))
    first_date, first_hour = f"{since:%Y-%m-%d}", f"{since:%H}"
    keys: list[str] = []
    for date_dir in _ls(fs, root):
        date = _partition_value(date_dir, "date")
        if date is None or date < first_date:
            continue
        for hour_dir in _ls(fs, date_dir):
            hour = _partition_value(hour_dir, "hour")
            if hour is None or (date, hour) < (first_date, first_hour):
                continue
            keys += [k for k in _ls(fs, hour_dir) if lake.is_data_file(k.rsplit("/", 1)[-1])]
    return keys


def _fetch_atomic(fs: fsspec.AbstractFileSystem, key: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    fs.get_file(key, str(tmp))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, target)


def mirror_bronze(lake_root: str | Path, topic: str, local_dir: str | Path, *,
                  lookback: timedelta | None = timedelta(hours=1)) -> int:
    """Copy ``topic``'s bronze files not yet in ``local_dir`` there, keeping their
    ``date=…/hour=…`` layout; returns how many were copied.

    Args:
        local_dir: The mirror of ``<lake>/bronze/<topic>`` (point Spark's file source here).
        lookback: Only hour partitions from the mirror's newest one less this are
            listed, since the sink writes each file into the hour it started writing it;
            None lists the whole topic every time. An empty mirror is always filled whole.
    """
    fs, root = lake.filesystem(lake.bronze_dir(lake_root, topic))
    local = Path(local_dir)
    newest = _newest_local_hour(local) if lookback is not None and local.exists() else None
    since = newest - lookback if newest is not None and lookback is not None else None
    copied = 0
    for key in _remote_files(fs, root, since):
        target = local.joinpath(*key[len(root) + 1:].split("/"))
        if target.exists():
            continue
        _fetch_atomic(fs, key, target)
        copied += 1
    if copied:
        log.info("mirrored %d new bronze file(s) of %s into %s", copied, topic, local)
    return copied


def _put_atomic(fs: fsspec.AbstractFileSystem, source: Path, dest: lake.LakePath) -> None:
    if lake.is_remote(dest):
        # One PUT (multipart above s3fs's chunk size): the object appears only when whole.
        fs.put_file(str(source), str(dest).removeprefix(lake.S3_SCHEME))
        return
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copyfile(source, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, dest)


def upload_tree(local_dir: str | Path, lake_root: str | Path, dataset: str) -> int:
    """Upload the Parquet files of the local silver dataset folder ``local_dir`` that the
    lake's ``silver/<dataset>`` does not have yet; returns how many were uploaded.

    What was uploaded is remembered in a hidden manifest in ``local_dir`` (written after
    each upload: a crash in between uploads that file again, to the same key, which
    changes nothing). Spark's in-progress output (``_temporary/``), markers
    (``_SUCCESS``) and checksums (``.*.crc``) stay local.
    """
    local = Path(local_dir)
    if not local.is_dir():
        return 0
    dest_root = lake.silver_dir(lake_root, dataset)
    fs, _ = lake.filesystem(dest_root)
    manifest = local / UPLOAD_MANIFEST
    done = set(manifest.read_text().splitlines()) if manifest.exists() else set()
    uploaded = 0
    with open(manifest, "a") as record:
        for path in sorted(local.rglob("*.parquet")):
            rel = path.relative_to(local).parts
            if any(part.startswith((".", "_")) for part in rel) or not path.is_file():
                continue
            dest = lake.join(dest_root, *rel)
            if str(dest) in done:
                continue
            _put_atomic(fs, path, dest)
            record.write(f"{dest}\n")
            record.flush()
            uploaded += 1
    if uploaded:
        log.info("uploaded %d silver file(s) of %s to %s", uploaded, dataset, dest_root)
    return uploaded
