"""Ingest throughput: connector → Kafka → bronze Parquet, sustained.

Starts an embedded Tansu broker, then two processes: a producer that turns the simulated
market's hourly history into validated envelopes and publishes them (EnvelopePublisher,
acks=all), and the bronze sink (BronzeSink: validate, dead-letter, Parquet, commit).
Reports messages per second from the first message produced to the last one durable in
bronze, and each side's own rate.

    .venv/bin/python bench/ingest.py [--messages 300000]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import broker
from core.catalog import load_catalog
from rwa.embedded import EmbeddedKafka, free_port


def produce(bootstrap: str, messages: int, out: mp.Queue) -> None:
    from ingestion.producer import EnvelopePublisher
    from ingestion.simulated import SimulatedMarket

    assets = load_catalog()
    hours = -(-messages // len(assets))
    history = SimulatedMarket(assets, seed=1).history(end=datetime.now(UTC), hours=hours)
    publisher = EnvelopePublisher(bootstrap, client_id="bench-producer")
    started = time.perf_counter()
    sent = 0
    for env in history:
        publisher.publish(env)
        sent += 1
        if sent == messages:
            break
    publisher.flush()
    out.put(("produced", sent, started, time.perf_counter()))
    publisher.close()


def sink(bootstrap: str, lake: str, messages: int, out: mp.Queue) -> None:
    from pipeline.bronze import BronzeSink

    s = BronzeSink(bootstrap=bootstrap, topic=broker.PRICE_RAW, lake_root=lake,
                   flush_records=50_000, flush_s=1.0)
    first = None
    while s.stats.messages < messages:
        if s.poll_once(timeout_ms=200) and first is None:
            first = time.perf_counter()
    out.put(("bronze", s.stats.messages, s.stats.files, time.perf_counter()))
    s.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rwa-bench-ingest-"))
    kafka = EmbeddedKafka(work, port=free_port())
    bootstrap = kafka.start()
    try:
        broker.ensure_topics(bootstrap, partitions=3)
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        consumer = ctx.Process(target=sink, args=(bootstrap, str(work / "lake"), args.messages, out))
        consumer.start()
        time.sleep(2)  # the sink is assigned and polling before the first message
        producer = ctx.Process(target=produce, args=(bootstrap, args.messages, out))
        producer.start()
        results = {}
        for _ in range(2):
            kind, *rest = out.get(timeout=900)
            results[kind] = rest
        producer.join()
        consumer.join()
    finally:
        kafka.stop()
    sent, p_start, p_end = results["produced"]
    landed, files, b_end = results["bronze"]
    total = b_end - p_start
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    print(f"producer (envelope + publish, acks=all): {sent / (p_end - p_start):,.0f} msg/s")
    print(f"connector -> Kafka -> bronze Parquet: {landed:,} messages in {total:.1f} s = "
          f"{landed / total:,.0f} msg/s sustained, {files} files (target >= 20,000 msg/s)")


if __name__ == "__main__":
    main()
