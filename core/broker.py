"""Kafka: topic names, and the admin/producer/consumer settings the platform relies on.

Tansu (the embedded broker) does not create topics on first use, so every topic is
created explicitly at start; its consumer-group join waits on the rebalance timeout,
so consumers here assign partitions themselves and commit offsets to the group.

The hot paths (producing envelopes, the bronze sink's consumer) use confluent-kafka
(librdkafka): kafka-python's per-message ``send`` cost more CPU than everything else
on the ingest path together. Topic administration and status queries stay on
kafka-python.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import confluent_kafka
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from core.errors import ServiceUnavailable

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

#: librdkafka producer settings. Tansu's idempotent producer is unfinished, so
#: idempotence is off explicitly; librdkafka then keeps each partition's order across
#: retries as long as one request is in flight per connection (retried messages go back
#: to the head of their partition queue). ``murmur2_random`` is the Java client's (and
#: kafka-python's) key hash, so a key lands on the same partition whichever client sent it.
PRODUCER_CONFIG: dict[str, object] = {
    "acks": "all",
    "enable.idempotence": False,
    "max.in.flight.requests.per.connection": 1,
    "partitioner": "murmur2_random",
    "linger.ms": 5,
    "batch.size": 1024 * 1024,
    "message.timeout.ms": 120_000,
    "delivery.report.only.error": True,
    "log.connection.close": False,  # Tansu closes idle connections; not worth a line each
}


class Producer:
    """A confluent-kafka producer with the settings above that fails loudly.

    ``send`` only queues; ``flush`` waits for the broker's acknowledgement of everything
    queued and raises ``ServiceUnavailable`` if any message could not be delivered, so a
    caller that flushed without an error knows every message is on the broker.
    """

    def __init__(self, bootstrap: str, *, client_id: str,
                 config: Mapping[str, object] | None = None) -> None:
        """``config``: librdkafka settings over ``PRODUCER_CONFIG``."""
        self.client_id = client_id
        self._failures: list[str] = []
        self._producer = confluent_kafka.Producer(
            {**PRODUCER_CONFIG, **(config or {}), "bootstrap.servers": bootstrap,
             "client.id": client_id, "on_delivery": self._on_delivery, "error_cb": self._on_error}
        )

    def _on_delivery(self, err: confluent_kafka.KafkaError | None, msg: confluent_kafka.Message) -> None:
        if err is not None:  # only failures are reported (delivery.report.only.error)
            self._failures.append(f"{msg.topic()}: {err.str()}")

    def _on_error(self, err: confluent_kafka.KafkaError) -> None:
        log.warning("%s: Kafka client error: %s", self.client_id, err.str())

    def send(self, topic: str, *, key: bytes | None, value: bytes) -> None:
        """Queue one message; waits while librdkafka's local queue is full."""
        try:
            self._producer.produce(topic, value, key)
        except BufferError:
            self._wait_and_produce(topic, key, value)

    def _wait_and_produce(self, topic: str, key: bytes | None, value: bytes) -> None:
        while True:
            self._producer.poll(0.05)  # lets librdkafka drain its queue to the broker
            try:
                self._producer.produce(topic, value, key)
                return
            except BufferError:
                continue

    def flush(self, timeout_s: float = 120.0) -> None:
        """Wait until every queued message is acknowledged.

        Raises:
            ServiceUnavailable: if some message failed or is still undelivered at the timeout.
        """
        left = self._producer.flush(timeout_s)
        if self._failures:
            failures, self._failures = self._failures, []
            raise ServiceUnavailable(
                f"{self.client_id}: {len(failures)} message(s) not delivered, e.g. {failures[0]}"
            )
        if left:
            raise ServiceUnavailable(f"{self.client_id}: {left} message(s) unacknowledged "
                                     f"after {timeout_s:.0f} s")

    def close(self) -> None:
        self.flush()


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


def producer(bootstrap: str, *, client_id: str) -> Producer:
    """A producer that waits for the full ISR and keeps per-key order, batching for throughput."""
    return Producer(bootstrap, client_id=client_id)


def assigned_consumer(bootstrap: str, topic: str, *, group_id: str,
                      timeout_s: float = 30.0) -> confluent_kafka.Consumer:
    """A consumer holding every partition of ``topic``, committing to ``group_id``.

    Manual assignment skips the group rebalance (seconds on Tansu) while the group id
    still stores committed offsets, so a restarted sink resumes where it committed.
    Offsets are committed explicitly by the caller (auto-commit is off).
    """
    consumer = confluent_kafka.Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "client.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.max.bytes": 32 * 1024 * 1024,
        "max.partition.fetch.bytes": 8 * 1024 * 1024,
        "log.connection.close": False,
    })
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s)
        info = meta.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            reason = info.error.str() if info is not None and info.error is not None else "no partitions"
            raise ServiceUnavailable(f"topic {topic!r} is not available: {reason}")
        consumer.assign([confluent_kafka.TopicPartition(topic, p) for p in sorted(info.partitions)])
    except confluent_kafka.KafkaException as e:
        consumer.close()
        raise ServiceUnavailable(f"Kafka at {bootstrap} did not answer: {e}") from e
    except ServiceUnavailable:
        consumer.close()
        raise
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
