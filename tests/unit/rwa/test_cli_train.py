"""`rwa train --submit`: the command hands the training job to the Ray Jobs API."""

from __future__ import annotations

import json
import shlex
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from rwa.cli import app
from training.train_job import parse_args

runner = CliRunner()


class FakeJobClient:
    submitted: ClassVar[list[tuple[str, str]]] = []

    def __init__(self, address: str) -> None:
        self.address = address

    def submit_job(self, *, entrypoint: str) -> str:
        self.submitted.append((self.address, entrypoint))
        return "raysubmit_123"


@pytest.fixture
def jobs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    import ray.job_submission

    FakeJobClient.submitted = []
    monkeypatch.setattr(ray.job_submission, "JobSubmissionClient", FakeJobClient)
    return FakeJobClient.submitted


def test_submit_sends_the_job_entrypoint_with_the_options(jobs) -> None:
    result = runner.invoke(app, ["train", "--workers", "3", "--epochs", "5", "--tune",
                                 "--samples", "4", "--submit", "http://head:8265", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["job_id"] == "raysubmit_123"
    (address, entrypoint), = jobs
    assert address == "http://head:8265"
    argv = shlex.split(entrypoint)
    assert argv[:3] == ["python", "-m", "training.train_job"]
    args = parse_args(argv[3:])
    assert (args.workers, args.epochs, args.tune, args.samples) == (3, 5, True, 4)


def test_bad_options_exit_2_without_submitting(jobs) -> None:
    result = runner.invoke(app, ["train", "--gpu", "maybe", "--submit", "http://head:8265"])
    assert result.exit_code == 2
    assert jobs == []
