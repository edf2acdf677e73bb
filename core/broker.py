"""Kafka: topic names, and the admin/producer/consumer settings the platform relies on.

Tansu (the embedded broker) does not create topics on first use, so every topic is
created explicitly at start; its consumer-group join waits on the rebalance timeout,
so consumers here assign partitions themselves and commit offsets to the group.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

log = logging.getLogger(__name__)

PRICE_RAW = "price-data-raw"
ONCHAIN_RAW = "onchain-data-raw"
ECONOMIC_RAW = "economic-data-raw"
NEWS_RAW = "news-raw"
DEAD_LETTER = "dead-letter"
RAW_TOPICS: tuple[str, ...] = (PRICE_RAW, ONCHAIN_RAW, ECONOMIC_RAW, NEWS_RAW)
ALL_TOPICS: tuple[str, ...] = (*RAW_TOPICS, DEAD_LETTER)

#: Which raw topic carries each envelope kind.
TOPIC_FOR_KIND: dict[str, str] = {
    "bar": PRICE_RAW,
    "tick": PRICE_RAW,
    "onchain": ONCHAIN_RAW,
    "macro": ECONOMIC_RAW,
    "news": NEWS_RAW,
}


def ensure_topics(bootstrap: str, *, partitions: int, topics: Iterable[str] = ALL_TOPICS) -> list[str]:
    """Create the topics that do not exist yet; return the ones created."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="rwa-admin")
    try:
        existing = set(admin.list_topics())
        wanted = [t for t in topics if t not in existing]
        if wanted:
            try:
                admin.create_topics(
                    [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in wanted]
                )
            except TopicAlreadyExistsError:
                pass  # another process won the race
            log.info("created topics %s", wanted)
        return wanted
    finally:
        admin.close()


def producer(bootstrap: str, *, client_id: str) -> KafkaProducer:
    """A producer that waits for the full ISR and retries, batching for throughput."""
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        retries=10,
        linger_ms=5,
        batch_size=256 * 1024,
        max_in_flight_requests_per_connection=1,  # keeps per-key order across retries
    )


def assigned_consumer(bootstrap: str, topic: str, *, group_id: str) -> KafkaConsumer:
    """A consumer holding every partition of ``topic``, committing to ``group_id``.

    Manual assignment skips the group rebalance (seconds on Tansu) while the group id
    still stores committed offsets, so a restarted sink resumes where it committed.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        client_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=20_000,
        fetch_max_bytes=32 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    partitions = consumer.partitions_for_topic(topic) or set()
    consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
    return consumer


def end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[str, int]:
    """Messages ever written per topic (sum of partition end offsets)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="rwa-status")
    try:
        result: dict[str, int] = {}
        for topic in topics:
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            result[topic] = sum(consumer.end_offsets(parts).values()) if parts else 0
        return result
    finally:
        consumer.close()
