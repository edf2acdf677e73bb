"""The one way sources publish: validated envelopes to the topic of their kind, keyed by
asset so each asset's events stay ordered in one partition; what fails validation goes
to ``dead-letter`` with the reason instead."""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from core import broker
from core.envelope import Envelope

log = logging.getLogger(__name__)


def message_key(env: Envelope) -> bytes:
    """Per-asset ordering; macro series (no asset) are ordered per series instead."""
    return (env.asset_id or str(env.payload.get("series") or env.source)).encode()


class EnvelopePublisher:
    """Publishes envelopes with acks=all; ``flush`` raises if any was not delivered."""

    def __init__(self, bootstrap: str, *, client_id: str) -> None:
        self._producer = broker.producer(bootstrap, client_id=client_id)
        self.client_id = client_id
        self.sent: Counter[str] = Counter()
        self.rejected = 0

    def publish(self, env: Envelope) -> None:
        topic = broker.TOPIC_FOR_KIND[env.kind]
        self._producer.send(topic, key=message_key(env), value=env.to_bytes())
        self.sent[topic] += 1

    def reject(self, raw: Any, reason: str, *, source: str) -> None:
        """Dead-letter something a source produced that is not a valid envelope."""
        body = raw if isinstance(raw, str) else json.dumps(raw, default=str)
        letter = {"stage": "ingest", "reason": reason, "source": source, "raw": body,
                  "detected_at": datetime.now(UTC).isoformat()}
        self._producer.send(broker.DEAD_LETTER, key=source.encode(),
                            value=json.dumps(letter).encode())
        self.rejected += 1
        log.warning("%s: rejected a message from %s: %s", self.client_id, source, reason)

    def flush(self) -> None:
        self._producer.flush()

    def close(self) -> None:
        self._producer.close()
