"""The Serve config and the RayService manifest must build the app `rwa up` builds."""

from pathlib import Path

import yaml

from serve.args import AppArgs

ROOT = Path(__file__).resolve().parents[3]


def _apps(config: dict) -> list[dict]:
    return config["applications"]


def test_serve_config_args_match_the_app_args_model() -> None:
    config = yaml.safe_load((ROOT / "serve" / "serve_config.yaml").read_text())
    (app,) = _apps(config)
    assert app["import_path"] == "serve.app:build_app"
    AppArgs.model_validate(app["args"])


def test_rayservice_serve_config_matches_the_app_args_model() -> None:
    manifest = yaml.safe_load((ROOT / "kuberay" / "rayservice.yaml").read_text())
    assert manifest["kind"] == "RayService"
    (app,) = _apps(yaml.safe_load(manifest["spec"]["serveConfigV2"]))
    assert app["import_path"] == "serve.app:build_app"
    AppArgs.model_validate(app["args"])
    assert manifest["spec"]["rayClusterConfig"]["rayVersion"] == "2.60.0"


def test_cluster_launcher_config_is_complete() -> None:
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    assert config["head_node_type"] in config["available_node_types"]
    assert config["provider"]["type"] == "aws"


def test_pipeline_rayjob_runs_the_backfill_entrypoint() -> None:
    import shlex

    from pipeline.job import parse_args

    manifest = yaml.safe_load((ROOT / "kuberay" / "rayjob-pipeline.yaml").read_text())
    assert manifest["kind"] == "RayJob"
    argv = shlex.split(manifest["spec"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "pipeline.job"]
    args = parse_args(argv[3:])
    assert args.start < args.end and args.start.tzinfo is not None
    assert manifest["spec"]["rayClusterSpec"]["rayVersion"] == "2.60.0"
