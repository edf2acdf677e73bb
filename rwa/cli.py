"""The ``rwa`` command. Each subcommand builds settings and calls into the packages;
heavy imports stay inside the commands so ``rwa --help`` is instant."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from core.errors import ConfigError, ForecastError, RwaError
from core.settings import Settings

if TYPE_CHECKING:
    from training.registry import ModelVersion

T = TypeVar("T")

app = typer.Typer(help="RWA Prime: analytics and predictions for tokenized real-world assets.",
                  no_args_is_help=True, add_completion=False)
console = Console()


def _settings() -> Settings:
    try:
        return Settings()
    except (ConfigError, ValueError) as e:
        console.print(f"[red]configuration error:[/red] {e}")
        raise typer.Exit(2) from e


def _logging(level: str, logfile: Path | None = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if logfile:
        logfile.parent.mkdir(parents=True, exist_ok=True)
        handlers = [logging.FileHandler(logfile)]
    logging.basicConfig(level=level, handlers=handlers,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # kafka-python logs every connection at INFO.
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))


@app.command()
def up() -> None:
    """Start the whole platform (embedded services unless their URLs are set) until Ctrl-C."""
    from rwa.stack import Stack

    settings = _settings()
    _logging(settings.log_level, settings.home / "logs" / "rwa-up.log")
    stack = Stack(settings, say=lambda m: console.print(f"[dim]{stack.elapsed():5.1f}s[/dim] {m}"))
    # A plain flag, not a threading.Event: the handler runs on the main thread, and
    # setting an Event that the main thread is waiting on deadlocks on its lock.
    stop_requested: list[int] = []

    def _on_signal(signum, frame):
        stop_requested.append(signum)

    try:
        info = stack.start()
        # Installed after ray.init so that Ray's own handlers don't replace ours.
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        tick = stack.wait_first_tick()
        console.print(
            f"[green]first live tick[/green] {tick['symbol']} {tick['price']:.4f} reached a "
            f"WebSocket client {stack.elapsed():.1f} s after start")
        stack.start_batch_side()
        console.print(f"[bold]RWA Prime is up[/bold]: API {info.api_url}  docs {info.api_url}/docs"
                      f"  Ray dashboard {info.dashboard_url or '(cluster)'}")
        console.print("Spark and the prediction scheduler are starting; press Ctrl-C to stop.")
        while not stop_requested:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    except RwaError as e:
        console.print(f"[red]start-up failed:[/red] {e}")
        raise typer.Exit(1) from e
    finally:
        console.print("stopping…")
        stack.stop()
        console.print("stopped; nothing left running.")


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Report every component: up or down, where it runs, and its key figures."""
    from rwa.status import collect

    report = collect(_settings())
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
    else:
        table = Table("component", "status", "where", "figures")
        for name, c in report["components"].items():
            colour = "green" if c["status"] == "up" else "red"
            table.add_row(name, f"[{colour}]{c['status']}[/{colour}]", str(c.get("where", "")),
                          json.dumps(c.get("figures", {}), default=str))
        console.print(table)
    if any(c["status"] != "up" for c in report["components"].values()):
        raise typer.Exit(1)


ingest_app = typer.Typer(help="Ingestion sources: what runs and how it is doing.",
                         no_args_is_help=True)
app.add_typer(ingest_app, name="ingest")


@ingest_app.command("status")
def ingest_status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
                  ) -> None:
    """Per ingestion actor: state, restarts, last event time, lag, messages/s, errors."""
    from rwa.status import ingest_report

    try:
        rows = ingest_report(_settings())
    except Exception as e:
        console.print(f"[red]cannot read ingestion status:[/red] {e}")
        raise typer.Exit(1) from e
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
    else:
        table = Table("actor", "ray", "state", "restarts", "last event", "lag s", "msg/s",
                      "sent", "dead-lettered", "errors")
        for row in rows:
            colour = "green" if row["ray_state"] == "ALIVE" else "red"
            table.add_row(row["actor"], f"[{colour}]{row['ray_state']}[/{colour}]",
                          str(row["state"]), str(row["restarts"]),
                          str(row["last_event_time"] or "—"), str(row["lag_s"]),
                          str(row["messages_per_s"]), str(row["sent"]),
                          str(row["dead_lettered"]), json.dumps(row["errors_by_kind"]))
        console.print(table)
    if not rows or any(row["ray_state"] != "ALIVE" for row in rows):
        raise typer.Exit(1)


pipeline_app = typer.Typer(help="The lake: backfill and report.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")


def _running_settings() -> Settings:
    from rwa.stack import StackInfo, resolved_settings

    settings = _settings()
    resolved = resolved_settings(settings, StackInfo.read(settings.run_dir))
    if resolved.database_url is None:
        console.print("[red]the platform is not running[/red] (no stack.json and no DATABASE_URL)")
        raise typer.Exit(1)
    return resolved


def _platform_settings() -> Settings | None:
    """The running platform's settings, or None when it is not running."""
    from rwa.stack import StackInfo, resolved_settings

    settings = _settings()
    resolved = resolved_settings(settings, StackInfo.read(settings.run_dir))
    return resolved if resolved.database_url is not None else None


@pipeline_app.command("run")
def pipeline_run(
    start: Annotated[datetime, typer.Option("--from", help="First event time (UTC).")],
    end: Annotated[datetime, typer.Option("--to", help="End of the range, exclusive (UTC).")],
) -> None:
    """Backfill silver and gold from bronze for an event-time range (idempotent)."""
    from rich.progress import Progress

    from core.catalog import load_catalog
    from core.db import SyncDb
    from pipeline.backfill import backfill
    from pipeline.spark import local_spark
    from rwa.embedded import find_java_home

    s = _running_settings()
    start, end = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (start, end))
    if end <= start:
        console.print("[red]--to must be after --from[/red]")
        raise typer.Exit(2)
    spark = local_spark("rwa-backfill", find_java_home(s.spark.java_home))
    db = SyncDb(s.database_url.get_secret_value())
    try:
        with Progress(console=console) as bar:
            task = bar.add_task("bronze files", total=None)
            result = backfill(
                spark, db, lake_root=s.lake_root, asset_ids=[a.asset_id for a in load_catalog()],
                start=start, end=end,
                progress=lambda done, total: bar.update(task, completed=done, total=total))
    finally:
        db.close()
        spark.stop()
    typer.echo(json.dumps(result.__dict__))


@pipeline_app.command("report")
def pipeline_report(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
                    ) -> None:
    """Rows per stage and kind, quarantine by rule, freshness per asset, streaming lag."""
    from core import cache
    from core.db import SyncDb
    from pipeline.report import collect

    s = _running_settings()
    db = SyncDb(s.database_url.get_secret_value())
    try:
        report = collect(db, s.lake_root)
    finally:
        db.close()
    stream: dict = {}
    if s.redis_url is not None:
        raw = cache.sync_client(s.redis_url.get_secret_value()).get(cache.heartbeat_key("pipeline"))
        beat = json.loads(raw) if raw else {}
        stream = {k: beat.get(k) for k in ("stream", "batch_id", "rows_per_s", "last_trigger",
                                           "stream_restarts", "error")}
        if beat.get("last_trigger"):
            last = datetime.fromisoformat(beat["last_trigger"].replace("Z", "+00:00"))
            stream["lag_s"] = round((datetime.now(UTC) - last).total_seconds(), 1)
    report["stream"] = stream
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
        return
    for section in ("bronze", "silver", "gold", "quarantine", "stream"):
        table = Table("name", "figures", title=section)
        for name, value in report[section].items():
            table.add_row(str(name), json.dumps(value, default=str))
        console.print(table)
    stale = {a: f["age_s"] for a, f in report["freshness"].items() if f["age_s"] > 7200}
    console.print(f"freshness: {len(report['freshness'])} assets with gold bars; "
                  f"older than 2 h: {stale or 'none'}")


@app.command()
def train(
    workers: Annotated[int, typer.Option(min=1, help="DDP workers (per trial with --tune).")] = 2,
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    tune: Annotated[bool, typer.Option("--tune", help="ASHA search over hyperparameters.")
                    ] = False,
    promote: Annotated[bool, typer.Option(
        "--promote", help="Promote the registered model version at once.")] = False,
    samples: Annotated[int, typer.Option(min=1, help="Tune trials.")] = 8,
    gpu: Annotated[str, typer.Option(help="auto (detect), yes or no.")] = "auto",
    days: Annotated[int, typer.Option(min=2, help="Days of daily closes per asset.")] = 730,
    resume_from: Annotated[str | None, typer.Option(help="Checkpoint directory to continue."
                                                    )] = None,
    synthetic: Annotated[int, typer.Option(help="Simulated assets instead of gold.")] = 0,
    address: Annotated[str | None, typer.Option(
        help="Ray cluster to join ('auto', 'ray://…'); default: a local Ray.")] = None,
    submit: Annotated[str | None, typer.Option(
        help="Ray Jobs API URL (http://head:8265): submit as a Ray job and return.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Train the LSTM across assets with Ray Train (or search it with Ray Tune)."""
    import shlex

    from training.train_job import connect_ray, parse_args, run

    argv = ["--workers", str(workers), "--epochs", str(epochs), "--gpu", gpu,
            "--days", str(days), "--samples", str(samples)]
    argv += ["--tune"] if tune else []
    argv += ["--promote"] if promote else []
    argv += ["--resume-from", resume_from] if resume_from else []
    argv += ["--synthetic", str(synthetic)] if synthetic else []
    try:
        args = parse_args(argv)
    except SystemExit as e:
        raise typer.Exit(2) from e
    if submit:
        from ray.job_submission import JobSubmissionClient

        entrypoint = shlex.join(["python", "-m", "training.train_job", *argv])
        job_id = JobSubmissionClient(submit).submit_job(entrypoint=entrypoint)
        typer.echo(json.dumps({"job_id": job_id, "entrypoint": entrypoint}) if as_json
                   else f"submitted {job_id}: {entrypoint}")
        return
    settings = _settings() if synthetic else _running_settings()
    _logging("WARNING")
    connect_ray(address or settings.ray.address, num_cpus=settings.ray.num_cpus,
                namespace=settings.ray.namespace, log_to_driver=not as_json)
    try:
        result = run(args, settings)
    except RwaError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    if as_json:
        typer.echo(json.dumps(result, default=str))
        return
    table = Table("figure", "value", title=f"LSTM {result['mode']} on {result['assets']} assets")
    for key, value in result.items():
        if key not in ("mode", "assets", "trials"):
            table.add_row(key, json.dumps(value, default=str))
    console.print(table)


models_app = typer.Typer(help="The model registry: versions, their metrics, the promoted one.",
                         no_args_is_help=True)
app.add_typer(models_app, name="models")


def _registry(call: Callable[[Any], Awaitable[T]]) -> T:
    """``await call(conn)`` on the platform's database; registry errors exit 2."""
    import asyncio

    import asyncpg

    s = _running_settings()

    async def go():
        conn = await asyncpg.connect(s.database_url.get_secret_value())
        try:
            return await call(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(go())
    except RwaError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    except (OSError, asyncpg.PostgresError) as e:
        typer.echo(f"error: cannot read the model registry: {e}", err=True)
        raise typer.Exit(1) from e


def _version_json(mv: ModelVersion) -> dict:
    return {"version": mv.version, "kind": mv.kind, "artifact_uri": mv.artifact_uri,
            "metrics": mv.metrics, "params": mv.params,
            "created_at": mv.created_at.isoformat(),
            "promoted_at": mv.promoted_at.isoformat() if mv.promoted_at else None}


@models_app.command("list")
def models_list(
    kind: Annotated[str | None, typer.Option(help="Only this kind (lstm…).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Registered model versions, newest first, with their metrics; * marks the promoted."""
    from training import registry

    found = _registry(lambda conn: registry.versions(conn, kind))
    if as_json:
        typer.echo(json.dumps([_version_json(mv) for mv in found], indent=2))
        return
    if not found:
        console.print("no model versions registered")
        return
    table = Table("")
    table.add_column("version", no_wrap=True)
    for column in ("kind", "created (UTC)", "metrics"):
        table.add_column(column)
    for mv in found:
        table.add_row("[green]*[/green]" if mv.promoted_at else "", mv.version, mv.kind,
                      f"{mv.created_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}",
                      json.dumps(mv.metrics))
    console.print(table)


@models_app.command("promote")
def models_promote(version: Annotated[str, typer.Argument(help="The version to promote.")],
                   ) -> None:
    """Promote VERSION: its kind's current promoted version is demoted in the same step."""
    from training import registry

    mv = _registry(lambda conn: registry.promote(conn, version))
    typer.echo(f"promoted {mv.version} ({mv.kind})")


user_app = typer.Typer(help="Accounts: the admin role (tiers are changed through the API).",
                       no_args_is_help=True)
app.add_typer(user_app, name="user")


@user_app.command("admin")
def user_admin(
    email: Annotated[str, typer.Argument(help="The account's email.")],
    revoke: Annotated[bool, typer.Option("--revoke", help="Take the role away.")] = False,
) -> None:
    """Grant the admin role to the account EMAIL (or take it with --revoke); admins manage
    users and tiers through /admin/users."""
    import asyncpg

    from serve.auth import users

    s = _running_settings()

    async def go() -> Any:
        conn = await asyncpg.connect(s.database_url.get_secret_value())
        try:
            return await users.set_admin(conn, email, is_admin=not revoke)
        finally:
            await conn.close()

    try:
        row = asyncio.run(go())
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    except (OSError, asyncpg.PostgresError) as e:
        typer.echo(f"error: cannot reach the database: {e}", err=True)
        raise typer.Exit(1) from e
    if row is None:
        typer.echo(f"error: no account with email {email}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{row['email']} (user {row['user_id']}) is "
               f"{'now an admin' if row['is_admin'] else 'no longer an admin'}")


@app.command()
def forecast(
    input: Annotated[Path, typer.Option("--input", "-i", exists=True, dir_okay=False,
                                        help="CSV with columns time,value.")],
    horizon: Annotated[int, typer.Option("--horizon", "-h", min=1, max=1000)],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Fit the forecasting model to one series from a CSV and print the forecast."""
    from training.forecast import forecast_series, read_series_csv

    try:
        result = forecast_series(read_series_csv(input), horizon)
    except ForecastError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    if as_json:
        typer.echo(result.model_dump_json())
        return
    table = Table("time", "mean", "80% interval", "95% interval",
                  title=f"{result.model_version} ({result.frequency})")
    for p in result.points:
        table.add_row(str(p.time), f"{p.mean:.6g}", f"{p.lower_80:.6g} … {p.upper_80:.6g}",
                      f"{p.lower_95:.6g} … {p.upper_95:.6g}")
    console.print(table)


@app.command()
def backtest(
    source: Annotated[str, typer.Option(help="gold (the running platform's assets), "
                                             "simulated (the simulator) or macro "
                                             "(statsmodels' US macro series).")] = "gold",
    horizons: Annotated[str | None, typer.Option(
        help="Comma-separated steps ahead; default 1,7,30 days (macro: 1,4,8 quarters).")
    ] = None,
    origins: Annotated[int, typer.Option(min=4, max=500, help="Rolling origins per series.")
                       ] = 40,
    days: Annotated[int, typer.Option(min=60, max=3650, help="Days of history (gold, simulated).")
                    ] = 365,
    jobs: Annotated[int, typer.Option(min=1, max=64, help="Series backtested at once.")] = 2,
    only: Annotated[str | None, typer.Option(
        help="Comma-separated asset ids or macro series names to backtest; default all.")
    ] = None,
    store: Annotated[bool, typer.Option(help="Save scores (and gold calibrations) to the "
                                             "running platform's database.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Rolling-origin backtest of the forecasting ensemble: MASE, sMAPE and 80/95 %
    interval coverage per horizon and model, against the naive forecast."""
    from training import backtest_job

    if source not in backtest_job.SOURCES:
        typer.echo(f"error: --source must be one of {', '.join(backtest_job.SOURCES)}", err=True)
        raise typer.Exit(2)
    try:
        steps = (tuple(sorted({int(h) for h in horizons.split(",")})) if horizons
                 else backtest_job.DEFAULT_HORIZONS[source])
    except ValueError as e:
        typer.echo(f"error: --horizons must be integers like 1,7,30 ({e})", err=True)
        raise typer.Exit(2) from e
    if not steps or steps[0] < 1 or steps[-1] > 365:
        typer.echo("error: --horizons must lie between 1 and 365", err=True)
        raise typer.Exit(2)
    # Gold needs the platform; the other sources only store there when it is running.
    settings = _running_settings() if source == "gold" else (
        _platform_settings() if store else None)
    wanted = {w.strip().lower() for w in only.split(",") if w.strip()} if only else None
    result = asyncio.run(_backtest(source, settings, steps, origins, days, jobs, store, wanted))
    if result["series"] == 0:
        typer.echo("error: no series to backtest"
                   + (f" (none matches --only {only})" if only else ""), err=True)
        raise typer.Exit(2)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    for target, scores in result["scores"].items():
        table = Table("horizon", "model", "MASE", "sMAPE %", "cover 80%", "cover 95%", "n",
                      title=f"{source} · {target} · run {result['run_id']}")
        for sc in scores:
            cov = [f"{c:.3f}" if c is not None else "" for c in (sc["coverage_80"], sc["coverage_95"])]
            table.add_row(str(sc["horizon"]), sc["model"], f"{sc['mase']:.3f}",
                          f"{sc['smape']:.2f}", *cov, str(sc["n"]))
        console.print(table)


async def _backtest(source: str, settings: Settings | None, horizons: tuple[int, ...],
                    origins: int, days: int, jobs: int, store: bool,
                    wanted: set[str] | None) -> dict:
    from dataclasses import asdict

    import asyncpg
    from rich.progress import Progress

    from core.catalog import load_catalog
    from training import backtest_job
    from training.predictions import promoted_lstm

    conn = (await asyncpg.connect(settings.database_url.get_secret_value())
            if settings is not None else None)
    try:
        lstm = await promoted_lstm(conn) if conn is not None else None
        assets = [a for a in load_catalog() if wanted is None or a.asset_id in wanted]
        if source == "gold":
            series = await backtest_job.gold_series(conn, assets, days=days)
        elif source == "simulated":
            from ingestion.simulated import SimulatedMarket

            series = backtest_job.simulated_series(
                SimulatedMarket(assets, seed=7).daily_series(days)) if assets else []
        else:
            series = backtest_job.macro_series(
                [n for n in backtest_job.MACRO_SERIES if wanted is None or n in wanted])
        with Progress(console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(f"backtesting {len(series)} series", total=len(series))
            outcomes = await asyncio.to_thread(
                backtest_job.run, series, horizons=horizons, max_origins=origins, jobs=jobs,
                lstm=lstm, progress=lambda _: bar.advance(task))
        run_id = None
        if store and conn is not None:
            run_id = await backtest_job.store(conn, outcomes, source=source, horizons=horizons,
                                              params={"origins": origins, "days": days})
    finally:
        if conn is not None:
            await conn.close()
    return {"run_id": run_id, "source": source, "series": len(outcomes),
            "model_versions": sorted({o.result.model_version for o in outcomes}),
            "scores": {t: [asdict(s) for s in sc]
                       for t, sc in backtest_job.summary(outcomes).items()}}


@app.command()
def sentiment(
    texts: Annotated[list[str] | None, typer.Argument(
        help="Texts to score; none: one text a line on stdin (blank lines skipped).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object a line.")] = False,
) -> None:
    """Score news texts: a label (positive, neutral, negative) and a score in [-1, 1]."""
    if not texts:
        if sys.stdin is None or sys.stdin.isatty():
            typer.echo("error: no input: give TEXT arguments or pipe one text a line on stdin",
                       err=True)
            raise typer.Exit(2)
        texts = [line.strip() for line in sys.stdin if line.strip()]
        if not texts:
            typer.echo("error: no input: stdin held no text", err=True)
            raise typer.Exit(2)
    empty = [i for i, text in enumerate(texts, 1) if not text.strip()]
    if empty:
        typer.echo(f"error: text {empty[0]} is empty", err=True)
        raise typer.Exit(2)
    settings = _settings()
    from rich.markup import escape
    from transformers.utils import logging as hf_logging

    from training.sentiment import SentimentModel

    hf_logging.disable_progress_bar()
    try:
        model = SentimentModel.from_settings(settings.sentiment)
        scores = model.score(texts)
    except (ConfigError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    if as_json:
        for s in scores:
            typer.echo(json.dumps({"text": s.text, "label": s.label, "score": round(s.score, 4)}))
        return
    table = Table("label", "score", "text", title=f"sentiment ({model.version})")
    colours = {"positive": "green", "neutral": "white", "negative": "red"}
    for s in scores:
        table.add_row(f"[{colours[s.label]}]{s.label}[/{colours[s.label]}]", f"{s.score:+.3f}",
                      escape(s.text))
    console.print(table)


if __name__ == "__main__":
    app()
