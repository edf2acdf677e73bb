"""The ``rwa`` command. Each subcommand builds settings and calls into the packages;
heavy imports stay inside the commands so ``rwa --help`` is instant."""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from core.errors import ConfigError, ForecastError, RwaError
from core.settings import Settings

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


if __name__ == "__main__":
    app()
