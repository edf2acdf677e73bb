"""The training job's command line and the RayJob manifest that runs it."""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path

import numpy as np
import pytest
import yaml

from training import lstm
from training.train_job import checkpoint_uri, parse_args, synthetic_series

MANIFEST = Path(__file__).parents[3] / "kuberay" / "rayjob-train.yaml"


def test_manifest_entrypoint_runs_the_job_with_arguments_it_parses() -> None:
    doc = yaml.safe_load(MANIFEST.read_text())
    assert doc["kind"] == "RayJob"
    argv = shlex.split(doc["spec"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "training.train_job"]
    assert importlib.util.find_spec(argv[2]) is not None
    args = parse_args(argv[3:])
    assert args.workers >= 2 and args.gpu == "auto" and not args.tune


def test_manifest_workers_have_gpus_for_every_training_worker() -> None:
    doc = yaml.safe_load(MANIFEST.read_text())
    spec = doc["spec"]
    groups = spec["rayClusterSpec"]["workerGroupSpecs"]
    gpus = 0
    for g in groups:
        for c in g["template"]["spec"]["containers"]:
            assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
            gpus += g["replicas"]
    assert gpus >= parse_args(shlex.split(spec["entrypoint"])[3:]).workers
    assert spec["rayClusterSpec"]["rayVersion"] == "2.60.0"


def test_bad_arguments_are_refused() -> None:
    for argv in (["--workers", "0"], ["--tune", "--resume-from", "/x"], ["--gpu", "maybe"]):
        with pytest.raises(SystemExit):
            parse_args(argv)


def test_synthetic_series_window_cleanly() -> None:
    series = synthetic_series(2, days=120)
    assert set(series) == {"sim-0", "sim-1"}
    assert all(np.all(s > 0) for s in series.values())
    assert len(lstm.make_windows(series, lookback=10).train_y) > 0


def test_promote_is_off_unless_asked() -> None:
    assert not parse_args([]).promote
    assert parse_args(["--promote"]).promote


def test_checkpoint_uri_puts_back_the_s3_scheme_ray_strips() -> None:
    assert checkpoint_uri("s3://lake/models/lstm", "lake/models/lstm/run/checkpoint_0") == \
        "s3://lake/models/lstm/run/checkpoint_0"
    assert checkpoint_uri("s3://lake/m", "s3://lake/m/run/c") == "s3://lake/m/run/c"
    assert checkpoint_uri("/data/lake/models/lstm", "/data/lake/models/lstm/run/c") == \
        "/data/lake/models/lstm/run/c"
