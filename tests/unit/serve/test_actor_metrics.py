"""Actor heartbeats become Prometheus series an operator can alert on."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from serve.actor_metrics import render


def _samples(text: bytes) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_source_figures_and_errors_by_kind_are_exported():
    beats = {
        "ingest-coinapi": {"source": "coinapi", "sent": 120, "messages_per_s": 2.5,
                           "lag_s": 30.0, "restarts": 1, "dead_lettered": 3,
                           "errors_by_kind": {"rate_limited": 2, "unavailable": 1}},
        "ingest-simulated-news": None,
        "pipeline": {"errors": {"OSError": 4}, "batches": 12, "rows_per_s": 850.5,
                     "stream": "active", "stream_restarts": 1, "quarantined_files": 2},
    }
    s = _samples(render(beats))
    src = (("actor", "ingest-coinapi"), ("source", "coinapi"))
    assert s[("rwa_ingest_messages_total", src)] == 120
    assert s[("rwa_ingest_messages_per_second", src)] == 2.5
    assert s[("rwa_ingest_lag_seconds", src)] == 30
    assert s[("rwa_ingest_restarts", src)] == 1
    assert s[("rwa_ingest_dead_lettered_total", src)] == 3
    assert s[("rwa_actor_errors_total", (("actor", "ingest-coinapi"), ("kind", "rate_limited")))] == 2
    assert s[("rwa_actor_errors_total", (("actor", "pipeline"), ("kind", "OSError")))] == 4
    assert s[("rwa_actor_up", (("actor", "ingest-simulated-news"),))] == 0
    assert s[("rwa_actor_up", (("actor", "ingest-coinapi"),))] == 1
    assert s[("rwa_pipeline_batches_total", ())] == 12
    assert s[("rwa_pipeline_rows_per_second", ())] == 850.5
    assert s[("rwa_pipeline_stream_active", ())] == 1
    assert s[("rwa_pipeline_stream_restarts", ())] == 1
    assert s[("rwa_pipeline_quarantined_files", ())] == 2
