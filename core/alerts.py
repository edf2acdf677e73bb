"""Alerts as a domain, without I/O: the conditions and their validated values, how one
is evaluated against what is known about its asset now, the lifecycle, and the re-arm
rule. The API (``serve.alerts``) validates with it; the monitor (``actors.alerts``)
evaluates with it.

Conditions (``condition_type`` → ``condition_value``):

* ``price_above {price}`` / ``price_below {price}``: the latest price is above / below.
* ``pct_move {pct, window_minutes}``: the price moved by at least ``pct`` percent, up or
  down, against the price ``window_minutes`` ago.
* ``risk_change {points}``: the composite risk score (0-100) is at least ``points`` away
  from the alert's baseline: its score when the alert was made or last edited, and
  after each trigger the score that triggered it.
* ``forecast_band {horizon, band}``: the price is outside the latest price forecast's
  80 % or 95 % interval at that horizon (days).

Re-arm rule (edge-triggered with a cooldown): an armed alert fires when its condition
becomes true and is disarmed by firing; it re-arms once its condition is false again
*and* at least ``cooldown_s`` has passed since it fired. So a condition that holds fires
once, not on every tick, and a price flapping around a threshold fires at most once per
cooldown. A condition that cannot be evaluated (no price history over the window yet,
no risk score, no forecast) neither fires nor re-arms.

Lifecycle (the seed's)::

    draft ──activate──▶ active ◀──resume── paused
                          │  ──pause──────▶  │
                          └─edit─▶ modified ◀┘─edit
                                      │
                                      └──▶ active   (an edit re-activates)
    any state ──delete──▶ deleted   (final)

Editing a draft changes it and keeps it a draft. ``modified`` is passed through, not
rested in: an edited alert is stored ``active`` with its arming and baseline reset.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import InvalidCondition, InvalidTransition

ConditionType = Literal["price_above", "price_below", "pct_move", "risk_change", "forecast_band"]
NotificationMethod = Literal["email", "telegram", "push"]
AlertState = Literal["draft", "active", "paused", "modified", "deleted"]
Action = Literal["activate", "pause", "resume", "edit", "delete"]

CONDITION_TYPES: tuple[str, ...] = get_args(ConditionType)
NOTIFICATION_METHODS: tuple[str, ...] = get_args(NotificationMethod)
STATES: tuple[str, ...] = get_args(AlertState)

#: Longest pct_move window: the monitor keeps this much price history per asset.
MAX_WINDOW_MINUTES = 1440

Price = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class _Condition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PriceAbove(_Condition):
    price: Price = Field(description="Fires when the price is above this (USD).")


class PriceBelow(_Condition):
    price: Price = Field(description="Fires when the price is below this (USD).")


class PctMove(_Condition):
    pct: float = Field(gt=0, le=1000, allow_inf_nan=False,
                       description="Absolute move in percent, up or down.")
    window_minutes: int = Field(ge=1, le=MAX_WINDOW_MINUTES,
                                description="Compared with the price this many minutes ago.")


class RiskChange(_Condition):
    points: float = Field(gt=0, le=100, allow_inf_nan=False,
                          description="Change of the composite risk score (0-100) from the "
                                      "alert's baseline.")


class ForecastBand(_Condition):
    horizon: int = Field(ge=1, le=365, description="Forecast horizon in days.")
    band: Literal["80", "95"] = Field(default="80", description="Which interval: 80 % or 95 %.")


Condition = PriceAbove | PriceBelow | PctMove | RiskChange | ForecastBand

CONDITION_MODELS: dict[str, type[_Condition]] = {
    "price_above": PriceAbove,
    "price_below": PriceBelow,
    "pct_move": PctMove,
    "risk_change": RiskChange,
    "forecast_band": ForecastBand,
}


def parse_condition(condition_type: str, value: Any) -> Condition:
    """The validated condition value of ``condition_type``.

    Raises:
        InvalidCondition: an unknown type or a value that does not fit it; the message
            names the field and the rule, e.g. ``pct_move: window_minutes: Input should
            be less than or equal to 1440``.
    """
    model = CONDITION_MODELS.get(condition_type)
    if model is None:
        raise InvalidCondition(f"unknown condition_type {condition_type!r}; expected one of "
                               f"{', '.join(CONDITION_TYPES)}")
    if not isinstance(value, dict):
        raise InvalidCondition(f"condition_value for {condition_type} must be an object "
                               f"with {', '.join(model.model_fields)}")
    try:
        return model.model_validate(value)  # type: ignore[return-value]
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or 'value'}: {err['msg']}" for err in e.errors())
        raise InvalidCondition(f"condition_value for {condition_type}: {problems}") from e


_TELEGRAM_CHAT = re.compile(r"^(-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31})$")
_URL = re.compile(r"^https?://[^\s/?#@]+(:[0-9]{1,5})?(/[^\s]*)?$")
MAX_URL_CHARS = 2048


def validate_target(method: str, target: str | None) -> str | None:
    """Where a notification goes, checked against its method.

    * ``email``: no target; it goes to the account's address.
    * ``telegram``: the chat id (``123456``, ``-100…`` for groups) or ``@channelname``.
    * ``push``: the http(s) URL of the webhook.

    Raises:
        InvalidCondition: the target is missing, superfluous or malformed.
    """
    if method not in NOTIFICATION_METHODS:
        raise InvalidCondition(f"unknown notification_method {method!r}; expected one of "
                               f"{', '.join(NOTIFICATION_METHODS)}")
    if method == "email":
        if target is not None:
            raise InvalidCondition("email alerts go to the account's address; "
                                   "leave notification_target out")
        return None
    if target is None or not target.strip():
        what = "the Telegram chat id" if method == "telegram" else "the webhook URL"
        raise InvalidCondition(f"{method} alerts need notification_target: {what}")
    target = target.strip()
    if method == "telegram" and not _TELEGRAM_CHAT.match(target):
        raise InvalidCondition("notification_target for telegram must be a chat id "
                               "(digits, '-' first for groups) or an @channel name")
    if method == "push" and (len(target) > MAX_URL_CHARS or not _URL.match(target)
                             or not target.isprintable()):
        raise InvalidCondition("notification_target for push must be an http(s) URL "
                               f"without credentials, at most {MAX_URL_CHARS} characters")
    return target


# -- evaluation ---------------------------------------------------------------------


class PriceHistory:
    """Recent prices of one asset for ``pct_move``: at most one sample per
    ``resolution_s`` (the newest in each slot wins), kept for ``max_age_s``."""

    def __init__(self, *, max_age_s: float = MAX_WINDOW_MINUTES * 60.0,
                 resolution_s: float = 1.0) -> None:
        self.max_age_s = max_age_s
        self.resolution_s = resolution_s
        self._times: list[float] = []
        self._prices: list[float] = []

    def __len__(self) -> int:
        return len(self._times)

    def add(self, at: float, price: float) -> None:
        """Record ``price`` at ``at`` (epoch seconds); older-than-newest samples are dropped."""
        if self._times and at < self._times[-1]:
            return  # out of order: the window is judged on the newest prices
        if self._times and self._slot(self._times[-1]) == self._slot(at):
            self._times[-1], self._prices[-1] = at, price
        else:
            self._times.append(at)
            self._prices.append(price)
        horizon = at - self.max_age_s
        if self._times[0] < horizon:
            # Keep the newest sample at or before the horizon: it is the price "then".
            cut = bisect.bisect_right(self._times, horizon) - 1
            if cut > 0:
                del self._times[:cut]
                del self._prices[:cut]

    def backfill(self, samples: Iterable[tuple[float, float]]) -> int:
        """Put samples older than those held before them (gold bars after a restart);
        return how many were added."""
        first = self._times[0] if self._times else math.inf
        older = sorted((t, p) for t, p in samples if t < first and p > 0)
        if older:
            self._times[:0] = [t for t, _ in older]
            self._prices[:0] = [p for _, p in older]
        return len(older)

    @property
    def oldest(self) -> float | None:
        return self._times[0] if self._times else None

    def _slot(self, at: float) -> int:
        return math.floor(at / self.resolution_s)

    def price_at(self, t: float) -> tuple[float, float] | None:
        """``(time, price)`` of the newest sample at or before ``t``; None before history."""
        i = bisect.bisect_right(self._times, t) - 1
        return (self._times[i], self._prices[i]) if i >= 0 else None

    @property
    def latest(self) -> tuple[float, float] | None:
        return (self._times[-1], self._prices[-1]) if self._times else None


@dataclass(frozen=True)
class ForecastBounds:
    """The latest price forecast of one horizon: its 80 % and 95 % intervals."""

    lower_80: float
    upper_80: float
    lower_95: float | None = None
    upper_95: float | None = None
    generated_at: str | None = None

    def interval(self, band: Literal["80", "95"]) -> tuple[float, float] | None:
        if band == "80":
            return self.lower_80, self.upper_80
        if self.lower_95 is None or self.upper_95 is None:
            return None
        return self.lower_95, self.upper_95


@dataclass(frozen=True)
class Market:
    """What is known about an asset at ``at`` (epoch seconds) when an alert is judged."""

    price: float
    at: float
    history: PriceHistory | None = None
    risk_score: float | None = None
    forecasts: dict[int, ForecastBounds] = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation:
    """Whether a condition holds (None: it cannot be judged yet, see ``value['reason']``)
    and the figures that decided it, stored as the trigger value."""

    holds: bool | None
    value: dict[str, Any]


def evaluate(condition: Condition, market: Market, *,
             risk_baseline: float | None = None) -> Evaluation:
    """Judge ``condition`` against ``market``; ``risk_baseline`` is for ``risk_change``."""
    price = market.price
    if isinstance(condition, PriceAbove):
        return Evaluation(price > condition.price, {"price": price, "threshold": condition.price})
    if isinstance(condition, PriceBelow):
        return Evaluation(price < condition.price, {"price": price, "threshold": condition.price})
    if isinstance(condition, PctMove):
        return _pct_move(condition, market)
    if isinstance(condition, RiskChange):
        return _risk_change(condition, market.risk_score, risk_baseline)
    if isinstance(condition, ForecastBand):
        return _forecast_band(condition, market)
    raise TypeError(f"not a condition: {condition!r}")


def _pct_move(c: PctMove, m: Market) -> Evaluation:
    window_s = c.window_minutes * 60.0
    ref = m.history.price_at(m.at - window_s) if m.history is not None else None
    if ref is None:
        return Evaluation(None, {"reason": f"no price history {c.window_minutes} min back yet"})
    ref_at, ref_price = ref
    move = (m.price / ref_price - 1.0) * 100.0
    return Evaluation(abs(move) >= c.pct, {
        "price": m.price, "reference_price": ref_price, "reference_at": ref_at,
        "pct_move": round(move, 6), "threshold_pct": c.pct, "window_minutes": c.window_minutes})


def _risk_change(c: RiskChange, score: float | None, baseline: float | None) -> Evaluation:
    if score is None or not math.isfinite(score):
        return Evaluation(None, {"reason": "no risk score for the asset yet"})
    if baseline is None:
        return Evaluation(None, {"reason": "no risk baseline yet", "risk_score": score})
    change = score - baseline
    return Evaluation(abs(change) >= c.points, {
        "risk_score": score, "baseline": baseline, "change": round(change, 6),
        "threshold_points": c.points})


def _forecast_band(c: ForecastBand, m: Market) -> Evaluation:
    bounds = m.forecasts.get(c.horizon)
    interval = bounds.interval(c.band) if bounds is not None else None
    if interval is None:
        return Evaluation(None, {"reason": f"no {c.band} % forecast at horizon {c.horizon} yet"})
    lower, upper = interval
    side = "above" if m.price > upper else "below" if m.price < lower else None
    return Evaluation(side is not None, {
        "price": m.price, "lower": lower, "upper": upper, "band": c.band, "horizon": c.horizon,
        "side": side, "generated_at": bounds.generated_at if bounds else None})


Decision = Literal["fire", "rearm"] | None


def decide(evaluation: Evaluation, *, armed: bool, last_triggered_at: float | None,
           now: float, cooldown_s: float) -> Decision:
    """The re-arm rule (module docstring): ``"fire"``, ``"rearm"`` or nothing to do."""
    if evaluation.holds is None:
        return None
    if evaluation.holds:
        return "fire" if armed else None
    if not armed and (last_triggered_at is None or now - last_triggered_at >= cooldown_s):
        return "rearm"
    return None


def describe(*, symbol: str, condition_type: str, condition: Condition,
             value: dict[str, Any]) -> str:
    """One human line for a notification about a trigger."""
    if isinstance(condition, PriceAbove):
        what = f"price {_num(value['price'])} is above {_num(condition.price)}"
    elif isinstance(condition, PriceBelow):
        what = f"price {_num(value['price'])} is below {_num(condition.price)}"
    elif isinstance(condition, PctMove):
        what = (f"price {_num(value['price'])} moved {value['pct_move']:+.2f} % in "
                f"{condition.window_minutes} min (threshold {_num(condition.pct)} %)")
    elif isinstance(condition, RiskChange):
        what = (f"risk score {_num(value['risk_score'])} changed {value['change']:+.1f} points "
                f"from {_num(value['baseline'])} (threshold {_num(condition.points)})")
    else:
        what = (f"price {_num(value['price'])} is {value['side']} the {condition.band} % "
                f"forecast band [{_num(value['lower'])}, {_num(value['upper'])}] at "
                f"{condition.horizon} d")
    return f"RWA Prime alert: {symbol} {what} ({condition_type})."


def _num(x: float) -> str:
    return f"{x:.6g}"


# -- lifecycle ------------------------------------------------------------------------

#: Every state → the states it may move to.
TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"active", "deleted"}),
    "active": frozenset({"paused", "modified", "deleted"}),
    "paused": frozenset({"active", "modified", "deleted"}),
    "modified": frozenset({"active", "deleted"}),
    "deleted": frozenset(),
}

#: Every action → the states it applies to and the state it leads to.
_ACTIONS: dict[str, tuple[frozenset[str], str]] = {
    "activate": (frozenset({"draft"}), "active"),
    "pause": (frozenset({"active"}), "paused"),
    "resume": (frozenset({"paused"}), "active"),
    "edit": (frozenset({"draft", "active", "paused"}), "modified"),
    "delete": (frozenset({"draft", "active", "paused", "modified"}), "deleted"),
}

_HINTS: dict[tuple[str, str], str] = {
    ("draft", "resume"): "a draft is started with activate, not resume",
    ("draft", "pause"): "a draft is not running; activate it first",
    ("active", "activate"): "the alert is already active",
    ("active", "resume"): "the alert is already active",
    ("paused", "pause"): "the alert is already paused",
    ("paused", "activate"): "a paused alert is started again with resume",
}


def transition(current: str, target: str) -> str:
    """Check one step of the lifecycle and return ``target``.

    Raises:
        InvalidTransition: ``current`` may not move to ``target``.
    """
    if current not in TRANSITIONS:
        raise InvalidTransition(current, target, f"unknown alert state {current!r}")
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing (it is final)"
        raise InvalidTransition(current, target, f"an alert that is {current} cannot become "
                                                 f"{target}; from {current} it may become "
                                                 f"{allowed}")
    return target


def apply(current: str, action: Action) -> tuple[str, ...]:
    """The states an ``action`` takes an alert in ``current`` through, the last being
    where it rests: ``edit`` on an active or paused alert is ``("modified", "active")``,
    on a draft ``()`` (it stays a draft).

    Raises:
        InvalidTransition: the action is not allowed in ``current``; the message says what is.
    """
    if action not in _ACTIONS:
        raise InvalidTransition(current, action, f"unknown action {action!r}")
    sources, target = _ACTIONS[action]
    if action == "edit" and current == "draft":
        return ()
    try:
        if current not in sources and current in TRANSITIONS and TRANSITIONS[current]:
            raise InvalidTransition(current, target, f"it is {current}; {action} applies to "
                                                     f"an alert that is "
                                                     f"{' or '.join(sorted(sources))}")
        path = [transition(current, target)]
    except InvalidTransition as e:
        hint = _HINTS.get((current, action))
        raise InvalidTransition(current, target,
                                f"cannot {action} the alert: {hint or e}") from e
    if target == "modified":
        path.append(transition("modified", "active"))
    return tuple(path)


def settled(current: str, action: Action) -> str:
    """Where an alert in ``current`` rests after ``action`` (see :func:`apply`)."""
    path = apply(current, action)
    return path[-1] if path else current
