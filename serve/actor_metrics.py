"""The long-lived actors' figures as Prometheus metrics, built at scrape time from their
heartbeats in Redis (the actors run in other processes; Redis is where they report)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


class _HeartbeatCollector:
    def __init__(self, beats: Mapping[str, Mapping[str, Any] | None]) -> None:
        self.beats = beats

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("rwa_actor_up", "1 while the actor's heartbeat is fresh",
                               labels=["actor"])
        sent = CounterMetricFamily("rwa_ingest_messages", "Messages published by the source",
                                   labels=["actor", "source"])
        rate = GaugeMetricFamily("rwa_ingest_messages_per_second",
                                 "Messages/s over the last minute", labels=["actor", "source"])
        lag = GaugeMetricFamily("rwa_ingest_lag_seconds",
                                "Now minus the newest event time published",
                                labels=["actor", "source"])
        restarts = GaugeMetricFamily("rwa_ingest_restarts",
                                     "Times Ray restarted the actor since rwa up",
                                     labels=["actor", "source"])
        dead = CounterMetricFamily("rwa_ingest_dead_lettered",
                                   "Records sent to dead-letter with a reason",
                                   labels=["actor", "source"])
        errors = CounterMetricFamily("rwa_actor_errors", "Failures by kind",
                                     labels=["actor", "kind"])
        batches = CounterMetricFamily("rwa_pipeline_batches", "Silver micro-batches processed")
        stream_rate = GaugeMetricFamily("rwa_pipeline_rows_per_second",
                                        "Rows/s of the silver stream's last micro-batch")
        stream_restarts = GaugeMetricFamily("rwa_pipeline_stream_restarts",
                                            "Times the silver stream was restarted")
        quarantined = GaugeMetricFamily("rwa_pipeline_quarantined_files",
                                        "Unreadable bronze files quarantined")
        stream_up = GaugeMetricFamily("rwa_pipeline_stream_active",
                                      "1 while the silver stream runs")
        for actor, beat in sorted(self.beats.items()):
            up.add_metric([actor], 1.0 if beat else 0.0)
            if not beat:
                continue
            by_kind = beat.get("errors_by_kind") or beat.get("errors") or {}
            for kind, count in sorted(by_kind.items()):
                errors.add_metric([actor, kind], float(count))
            if actor == "pipeline":
                batches.add_metric([], float(beat.get("batches") or 0))
                stream_rate.add_metric([], float(beat.get("rows_per_s") or 0))
                stream_restarts.add_metric([], float(beat.get("stream_restarts") or 0))
                quarantined.add_metric([], float(beat.get("quarantined_files") or 0))
                stream_up.add_metric([], 1.0 if beat.get("stream") == "active" else 0.0)
            if "source" not in beat:
                continue
            labels = [actor, str(beat["source"])]
            sent.add_metric(labels, float(beat.get("sent") or 0))
            rate.add_metric(labels, float(beat.get("messages_per_s") or 0))
            restarts.add_metric(labels, float(beat.get("restarts") or 0))
            dead.add_metric(labels, float(beat.get("dead_lettered") or 0))
            if beat.get("lag_s") is not None:
                lag.add_metric(labels, float(beat["lag_s"]))
        yield from (up, sent, rate, lag, restarts, dead, errors, batches, stream_rate,
                    stream_restarts, quarantined, stream_up)


def render(beats: Mapping[str, Mapping[str, Any] | None]) -> bytes:
    """Prometheus text for ``{actor name: its heartbeat (None when missing)}``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_HeartbeatCollector(beats))
    return generate_latest(registry)
