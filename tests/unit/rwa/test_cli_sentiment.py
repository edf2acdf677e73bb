"""``rwa sentiment``: the JSON-lines contract, stdin, the table, and bad input.

The default model is loaded once for the module and handed to the command in place
of a fresh load; one test goes through the settings to the loader for real."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rwa.cli import app
from training.sentiment import SentimentModel

runner = CliRunner()


@pytest.fixture(scope="module")
def model() -> SentimentModel:
    return SentimentModel.load()


@pytest.fixture
def loaded(model: SentimentModel, monkeypatch: pytest.MonkeyPatch) -> SentimentModel:
    monkeypatch.setattr(SentimentModel, "from_settings",
                        classmethod(lambda cls, settings, **kw: model))
    return model


def _lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_json_lines_follow_the_contract(loaded: SentimentModel) -> None:
    texts = ["Gold rallies to a record high as inflows surge",
             "Hackers drain $100 million from lending protocol",
             "Fund to publish its quarterly report on Thursday"]
    result = runner.invoke(app, ["sentiment", "--json", *texts])
    assert result.exit_code == 0, result.output
    rows = _lines(result.stdout)
    assert [r["text"] for r in rows] == texts
    assert [r["label"] for r in rows] == ["positive", "negative", "neutral"]
    for r in rows:
        assert set(r) == {"text", "label", "score"}
        assert -1 <= r["score"] <= 1
    assert rows[0]["score"] > 0 > rows[1]["score"]


def test_stdin_one_text_a_line(loaded: SentimentModel) -> None:
    result = runner.invoke(app, ["sentiment", "--json"],
                           input="Bitcoin crashes 20% as panic spreads\n\nETF inflows hit a record\n")
    assert result.exit_code == 0, result.output
    rows = _lines(result.stdout)
    assert [r["label"] for r in rows] == ["negative", "positive"]


def test_table_without_json(loaded: SentimentModel) -> None:
    result = runner.invoke(app, ["sentiment", "Stablecoin issuer wins banking license"])
    assert result.exit_code == 0, result.output
    assert "Stablecoin issuer wins banking license" in result.stdout
    assert "positive" in result.stdout


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (["sentiment", "--json", ""], None, "text 1 is empty"),
    (["sentiment", "--json", "fine", "   "], None, "text 2 is empty"),
    (["sentiment", "--json"], "", "no input"),
    (["sentiment", "--json"], "\n  \n", "no input"),
])
def test_bad_input_is_a_clear_error(loaded: SentimentModel, args: list[str], stdin: str | None,
                                    message: str) -> None:
    result = runner.invoke(app, args, input=stdin)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_model_dir_setting_reaches_the_loader(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    monkeypatch.setenv("RWA_SENTIMENT__MODEL_DIR", str(tmp_path / "absent"))
    result = runner.invoke(app, ["sentiment", "--json", "Gold rallies"])
    assert result.exit_code == 2
    assert str(tmp_path / "absent") in result.output and "Traceback" not in result.output
