"""The Serve config and the RayService manifest must build the app `rwa up` builds, name
every model deployment's CPUs and autoscaling, and fit the clusters they run on."""

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from serve.args import AppArgs, Autoscaling, PredictionArgs, RiskArgs, SentimentArgs
from serve.serve_env import CLUSTER_ENV

ROOT = Path(__file__).resolve().parents[3]
MODEL_DEPLOYMENTS = ("prediction", "risk", "sentiment")


def _apps(config: dict) -> list[dict]:
    return config["applications"]


def _serve_config_app() -> dict:
    (app,) = _apps(yaml.safe_load((ROOT / "serve" / "serve_config.yaml").read_text()))
    return app


def _rayservice() -> tuple[dict, dict]:
    manifest = yaml.safe_load((ROOT / "kuberay" / "rayservice.yaml").read_text())
    (app,) = _apps(yaml.safe_load(manifest["spec"]["serveConfigV2"]))
    return manifest, app


def _deployments(args: AppArgs) -> dict[str, tuple[float, int, int]]:
    """Deployment → (CPUs per replica, min replicas, max replicas)."""
    ingress = args.ingress_autoscaling
    out = {"api": (args.ingress_cpus, ingress.min_replicas, ingress.max_replicas)}
    for name in MODEL_DEPLOYMENTS:
        part = getattr(args, name)
        if part is not None:
            out[name] = (part.num_cpus, part.autoscaling.min_replicas,
                         part.autoscaling.max_replicas)
    return out


def _names_every_deployment(raw: dict) -> None:
    """Each model deployment is in the args with its CPUs and autoscaling spelled out,
    so that an operator reads them where they change them."""
    for name in MODEL_DEPLOYMENTS:
        assert {"num_cpus", "autoscaling"} <= set(raw[name]), name
        assert {"min_replicas", "max_replicas"} <= set(raw[name]["autoscaling"]), name


def test_serve_config_args_match_the_app_args_model() -> None:
    app = _serve_config_app()
    assert app["import_path"] == "serve.app:build_app"
    args = AppArgs.model_validate(app["args"])
    _names_every_deployment(app["args"])
    assert args.risk is not None and args.risk.lake_root  # news as risk evidence
    # Every tier's horizons can be served: the job's, or the prediction deployment's.
    assert args.prediction is not None
    assert all(h <= 365 for t in args.tiers.values() for h in t.forecast_horizons)


def test_rayservice_serve_config_matches_the_app_args_model() -> None:
    manifest, app = _rayservice()
    assert manifest["kind"] == "RayService"
    assert app["import_path"] == "serve.app:build_app"
    args = AppArgs.model_validate(app["args"])
    _names_every_deployment(app["args"])
    assert manifest["spec"]["rayClusterConfig"]["rayVersion"] == "2.60.0"
    # The same application as the standalone Serve config, but for the services' hosts.
    urls = ("database_url", "redis_url")
    standalone = _serve_config_app()["args"]
    assert {k: v for k, v in app["args"].items() if k not in urls} == \
        {k: v for k, v in standalone.items() if k not in urls}
    # Every replica fits one worker pod (the head runs none: num-cpus 0), and the
    # autoscaling ceilings fit the worker group's ceiling.
    cluster = manifest["spec"]["rayClusterConfig"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    (group,) = cluster["workerGroupSpecs"]
    pod_cpus = float(group["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"])
    deployments = _deployments(args)
    assert all(cpus <= pod_cpus for cpus, _, _ in deployments.values()), deployments
    assert sum(c * hi for c, _, hi in deployments.values()) <= group["maxReplicas"] * pod_cpus
    assert sum(c * lo for c, lo, _ in deployments.values()) <= group["minReplicas"] * pod_cpus


def test_cluster_launcher_config_is_complete() -> None:
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    assert config["head_node_type"] in config["available_node_types"]
    assert config["provider"]["type"] == "aws"


def test_every_ray_node_gets_the_serve_settings() -> None:
    """Serve reads CLUSTER_ENV in its controller and proxies: every node's Ray processes
    must start with it, on KubeRay and under the cluster launcher."""
    manifest, _ = _rayservice()
    cluster = manifest["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        (container,) = group["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert CLUSTER_ENV.items() <= env.items(), container["name"]
    launcher = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    prefix = " ".join(f"{k}={v}" for k, v in CLUSTER_ENV.items())
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        (start,) = [c for c in launcher[key] if "ray start" in c]
        assert start.startswith(f"{prefix} ray start"), start


def test_rwa_up_gives_haproxy_free_side_ports_unless_set() -> None:
    """HAProxy's stats and metrics listeners default to fixed ports another program may
    hold; ``rwa up``'s head gets free ones, or the ones the user set."""
    import socket

    from rwa.stack import head_env
    from serve.serve_env import HAPROXY_SIDE_PORTS

    env = head_env({})
    assert CLUSTER_ENV.items() <= env.items()
    ports = [int(env[var]) for var in HAPROXY_SIDE_PORTS]
    for port in ports:  # free now: each can be bound
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
    assert not {8404, 9101} & set(ports)
    chosen = head_env({"RAY_SERVE_HAPROXY_STATS_PORT": "18404"})
    assert chosen["RAY_SERVE_HAPROXY_STATS_PORT"] == "18404"
    assert chosen["RAY_SERVE_HAPROXY_METRICS_PORT"].isdigit()


def test_cluster_launcher_workers_fit_the_serve_config() -> None:
    """``serve deploy serve/serve_config.yaml`` on the launcher's cluster: every replica
    fits a CPU worker (the head has no CPUs for them), the floors fit the workers always
    up, the ceilings the most workers."""
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    nodes = config["available_node_types"]
    assert nodes[config["head_node_type"]]["resources"]["CPU"] == 0
    worker = nodes["cpu_worker"]
    cpus = worker["resources"]["CPU"]
    deployments = _deployments(AppArgs.model_validate(_serve_config_app()["args"]))
    assert all(c <= cpus for c, _, _ in deployments.values()), deployments
    assert sum(c * lo for c, lo, _ in deployments.values()) <= worker["min_workers"] * cpus
    assert sum(c * hi for c, _, hi in deployments.values()) <= worker["max_workers"] * cpus


def test_the_local_defaults_fit_a_two_core_machine() -> None:
    """rwa up's defaults: fractional CPUs, and every deployment's ceiling together within
    the 3 logical CPUs left beside the actors and Spark (serve/app.py's budget)."""
    args = AppArgs(database_url="postgresql://x/y", redis_url="redis://x")
    deployments = _deployments(args)
    assert set(deployments) == {"api", *MODEL_DEPLOYMENTS}
    assert all(0 < c < 1 for c, _, _ in deployments.values())
    assert sum(c * hi for c, _, hi in deployments.values()) <= 3.0
    assert args.risk is not None and args.risk.autoscaling.min_replicas == 0


def test_deployment_options_are_what_serve_takes() -> None:
    from ray import serve

    from serve.prediction_deployment import Forecaster
    from serve.risk_deployment import RiskScorer
    from serve.sentiment_deployment import SentimentScorer

    for cls, args in ((Forecaster, PredictionArgs(num_cpus=0.75, autoscaling={"max_replicas": 3})),
                      (RiskScorer, RiskArgs()), (SentimentScorer, SentimentArgs())):
        deployment = cls.options(**args.deployment_options())
        assert isinstance(deployment, serve.Deployment)
        assert deployment.ray_actor_options["num_cpus"] == args.num_cpus
        assert deployment.max_ongoing_requests == args.max_ongoing_requests
        scaling = deployment._deployment_config.autoscaling_config
        assert scaling.min_replicas == args.autoscaling.min_replicas
        assert scaling.max_replicas == args.autoscaling.max_replicas
    for bad in ({"min_replicas": 3, "max_replicas": 2}, {"max_replicas": 0},
                {"target_ongoing_requests": 0}):
        with pytest.raises(ValidationError):
            Autoscaling.model_validate(bad)
    with pytest.raises(ValidationError):
        PredictionArgs.model_validate({"num_cpus": 0})
    with pytest.raises(ValidationError):
        PredictionArgs.model_validate({"unknown": 1})


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
