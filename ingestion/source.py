"""What an ingestion source is, to the actor that runs it.

A source turns a cursor into the next batch of envelopes and a new cursor, and does
nothing else: no Kafka, no database, no threads of its own. The hosting actor
(``actors/sources.py``) publishes the batch, flushes with acks=all, and only then
checkpoints the returned cursor in PostgreSQL, so that a restart resumes at the first
window not yet published. Cursors are plain JSON.

Windows are the unit of "no gap, no duplicate": every source emits events on a grid it
can recompute from the cursor (hourly bars, the simulator's tick grid, a provider's
period boundaries, a file's rows), so after a restart the same window yields the same
events, and the actor drops those already on the topic (see ``published_watermarks``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from core.envelope import Envelope

Cursor = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Reject:
    """Something a source received that cannot become an envelope, and why.

    ``raw`` is kept as received (truncated by the client) so the dead letter can be
    inspected and replayed.
    """

    raw: Any
    reason: str


@dataclass(slots=True)
class Batch:
    """One poll's output.

    Attributes:
        envelopes: Valid envelopes, in event-time order per asset.
        rejects: What goes to ``dead-letter`` with its reason.
        cursor: The source's cursor once this batch is published.
        more: The source is behind (history, catch-up, another page): poll again now
            rather than after the interval.
    """

    envelopes: list[Envelope] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    cursor: Cursor = field(default_factory=dict)
    more: bool = False


class Source(Protocol):
    """A pollable source of envelopes.

    Attributes:
        name: Unique per running source; the envelopes' ``source`` field, the cursor's
            key in PostgreSQL and the actor's name (``ingest-<name>``).
        interval_s: Wall-clock seconds between polls once caught up.
    """

    name: str
    interval_s: float

    def poll(self, cursor: Cursor | None, now: datetime) -> Batch:
        """The next batch after ``cursor`` (``None`` on the very first start), up to
        ``now``. Must not raise for bad records (they are :class:`Reject`); may raise
        :class:`core.errors.ProviderError` when the provider itself fails."""
        ...

    def close(self) -> None:
        """Release clients (HTTP connections, WebSockets)."""
        ...
