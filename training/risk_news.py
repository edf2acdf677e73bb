"""News as risk evidence: headlines classified into risk signals by plain keyword rules,
weighted by severity and age.

Only titles are read. A headline may give several signals (an exploit that halts
redemptions is both a security incident and a redemption halt). The same headline
seen twice (a feed's duplicate, a re-published story) counts once, at its latest time.
Rules and weights are listed in ``docs/risk-methodology.md``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from core.catalog import by_id_or_symbol

SignalKind = Literal[
    "credit_event", "regulatory_negative", "regulatory_positive", "security_incident",
    "audit", "redemption_halt",
]

#: Half-life of a headline's weight, in days.
NEWS_HALF_LIFE_DAYS = 90.0
#: Headlines older than this many days before the score's time are ignored.
NEWS_WINDOW_DAYS = 365.0
#: A redemption halt counts for the liquidity factor within this many days.
REDEMPTION_HALT_DAYS = 90.0


def _rx(*parts: str) -> re.Pattern[str]:
    return re.compile("".join(parts), re.IGNORECASE)


_CREDIT_NEGATION = _rx(
    r"\b(zero|no|without|free of)\b[\w\s-]{0,25}?",
    r"\b(defaults?|impairments?|delinquenc\w*|missed)",
)

#: (kind, severity, pattern) in the order they are tried; every match counts.
RULES: tuple[tuple[SignalKind, float, re.Pattern[str]], ...] = (
    ("credit_event", 1.0, _rx(
        r"\b(default(s|ed)?|impairments?|impaired|write-?downs?|wr(ote|ites?) down|",
        r"insolven\w*|bankrupt\w*|liquidat(ed|ion)\b)")),
    ("credit_event", 0.7, _rx(r"\b(missed (a |scheduled )*payments?|non-accrual|delinquen\w*)")),
    ("credit_event", 0.5, _rx(r"\bdowngrade[sd]?\b")),
    ("regulatory_negative", 1.0, _rx(
        r"\b(enforcement|sanction(s|ed)?|cease[- ]and[- ]desist|charged|fined|penalt(y|ies)|",
        r"ban(s|ned)?|wells notice|crackdown|shut(s)? down by)\b|",
        r"\b(sec|cftc|finra|doj|regulators?|prosecutors?|watchdog|authorities)\b",
        r"[\w\s,]{0,30}?\b(charges?|sues|fines?)\b")),
    ("regulatory_negative", 0.6, _rx(
        r"\b(probe[sd]?|investigat\w*|lawsuit|sue[sd]?|subpoena\w*|class action)\b")),
    ("regulatory_positive", 0.5, _rx(
        r"\b(regulatory approval|approv(al|es|ed) by|wins? (\w+ )?approval|",
        r"licen[cs]e (granted|approved)|",
        r"(granted|receives?|wins?|obtains?) (a |an )?(\w+ )?licen[cs]e|authori[sz]ed by)\b")),
    ("security_incident", 1.0, _rx(
        r"\b(exploit(s|ed)?|hack(s|ed)?|breach(es|ed)?|drain(s|ed)?|stolen|attacker)\b")),
    ("security_incident", 0.4, _rx(r"\b(vulnerabilit(y|ies)|critical (bug|flaw|issue)s?)\b")),
    ("redemption_halt", 1.0, _rx(
        r"\b(halt\w*|suspend\w*|paus\w*|freez\w*|frozen|gate[sd]?)\b[\w\s$.,-]{0,40}?",
        r"\bredemptions?\b|",
        r"\bredemptions? (are |were |have been )?(halted|suspended|paused|frozen|gated)\b")),
)
_AUDIT = _rx(r"\baudit(s|ed)?\b")
_AUDIT_OK = _rx(r"\b(pass(es|ed)?|complet\w*|no critical|clean|concludes?)\b")


@dataclass(frozen=True, slots=True)
class NewsItem:
    """One news story about one or more assets.

    Attributes:
        time: When it was published (timezone-aware).
        title: The headline; the only text the rules read.
        asset_ids: The catalog ids the story is about.
        url: Its link, shown in the evidence when known.
        source: The outlet or provider.
    """

    time: datetime
    title: str
    asset_ids: tuple[str, ...] = ()
    url: str | None = None
    source: str | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> NewsItem | None:
        """A news item from a silver news row or any mapping of the same shape.

        Reads ``event_time`` (or ``time``), ``title``, ``asset_id`` and ``assets``
        (ids or symbols, resolved through the catalog), ``url`` and ``outlet`` (or
        ``source``). Returns ``None`` for a row without a usable time or title.
        """
        when = record.get("event_time") or record.get("time")
        title = record.get("title")
        if not isinstance(when, datetime) or not isinstance(title, str) or not title.strip():
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        refs = [record.get("asset_id"), *(record.get("assets") or ())]
        ids: list[str] = []
        for ref in refs:
            if not isinstance(ref, str) or not ref.strip():
                continue
            asset = by_id_or_symbol(ref)
            asset_id = asset.asset_id if asset else ref.strip().lower()
            if asset_id not in ids:
                ids.append(asset_id)
        return cls(when, title.strip(), tuple(ids), record.get("url") or None,
                   record.get("outlet") or record.get("source") or None)


def news_from_records(records: Iterable[Mapping[str, Any]]) -> list[NewsItem]:
    """News items from silver news rows (e.g. a Parquet table's ``to_pylist()``); rows
    without a usable time or title are skipped."""
    return [item for r in records if (item := NewsItem.from_record(r)) is not None]


@dataclass(frozen=True, slots=True)
class Signal:
    """A headline read as risk evidence, with its weight at the score's time."""

    kind: SignalKind
    severity: float
    weight: float  # severity × decay
    item: NewsItem

    def describe(self) -> str:
        link = f" <{self.item.url}>" if self.item.url else ""
        return f"{self.item.time:%Y-%m-%d} “{self.item.title}”{link} (weight {self.weight:.2f})"


def classify(title: str) -> list[tuple[SignalKind, float]]:
    """The risk signals in a headline, each with its severity (the strongest rule per kind)."""
    found: dict[SignalKind, float] = {}
    negated_credit = bool(_CREDIT_NEGATION.search(title))
    for kind, severity, pattern in RULES:
        if kind == "credit_event" and negated_credit:
            continue
        if pattern.search(title):
            found[kind] = max(found.get(kind, 0.0), severity)
    if _AUDIT.search(title) and _AUDIT_OK.search(title) and "security_incident" not in found:
        found["audit"] = 1.0
    return sorted(found.items())


def decay(age_days: float) -> float:
    """A headline's weight multiplier at ``age_days`` old: halves every half-life."""
    return 0.5 ** (max(0.0, age_days) / NEWS_HALF_LIFE_DAYS)


def signals(news: Sequence[NewsItem], *, asset_id: str, as_of: datetime) -> list[Signal]:
    """The signals in the news about ``asset_id`` from the window before ``as_of``.

    Stories after ``as_of`` or older than :data:`NEWS_WINDOW_DAYS` are left out; a
    headline repeated counts once per kind, at its most recent time. Newest first.
    """
    latest: dict[tuple[SignalKind, str], Signal] = {}
    for item in news:
        if asset_id not in item.asset_ids:
            continue
        age = (as_of - item.time).total_seconds() / 86400.0
        if age < 0 or age > NEWS_WINDOW_DAYS or not math.isfinite(age):
            continue
        key_title = " ".join(item.title.lower().split())
        for kind, severity in classify(item.title):
            signal = Signal(kind, severity, severity * decay(age), item)
            key = (kind, key_title)
            if key not in latest or latest[key].item.time < item.time:
                latest[key] = signal
    return sorted(latest.values(), key=lambda s: s.item.time, reverse=True)


def saturating(total_weight: float) -> float:
    """Fraction of a factor's points for a summed event weight: 1 − e^(−w), in [0, 1)."""
    return 1.0 - math.exp(-max(0.0, total_weight))


def evidence_list(found: Sequence[Signal], *, limit: int = 3) -> str:
    """The first ``limit`` signals as text, with a count of the rest."""
    shown = "; ".join(s.describe() for s in found[:limit])
    more = len(found) - limit
    return shown + (f"; and {more} more" if more > 0 else "")
