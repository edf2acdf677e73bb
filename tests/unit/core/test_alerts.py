"""Alert conditions, their evaluation, the re-arm rule and the lifecycle (core.alerts)."""

from __future__ import annotations

import json

import pytest

from core.alerts import (
    TRANSITIONS,
    Evaluation,
    ForecastBand,
    ForecastBounds,
    Market,
    PctMove,
    PriceAbove,
    PriceBelow,
    PriceHistory,
    RiskChange,
    apply,
    decide,
    describe,
    evaluate,
    parse_condition,
    settled,
    transition,
    validate_target,
)
from core.errors import InvalidCondition, InvalidTransition

# -- condition values -------------------------------------------------------------------


@pytest.mark.parametrize(("condition_type", "value", "expected"), [
    ("price_above", {"price": 101.5}, PriceAbove(price=101.5)),
    ("price_below", {"price": "0.99"}, PriceBelow(price=0.99)),
    ("pct_move", {"pct": 5, "window_minutes": 60}, PctMove(pct=5, window_minutes=60)),
    ("risk_change", {"points": 10}, RiskChange(points=10)),
    ("forecast_band", {"horizon": 7, "band": "95"}, ForecastBand(horizon=7, band="95")),
    ("forecast_band", {"horizon": 1}, ForecastBand(horizon=1, band="80")),
])
def test_valid_condition_values_parse(condition_type: str, value: dict, expected: object) -> None:
    assert parse_condition(condition_type, value) == expected


@pytest.mark.parametrize(("condition_type", "value", "message"), [
    ("price_above", {"price": -1}, "price: Input should be greater than 0"),
    ("price_above", {"price": 0}, "greater than 0"),
    ("price_above", json.loads('{"price": 1e999}'), "finite number"),
    ("price_above", {}, "price: Field required"),
    ("price_above", {"price": 1, "extra": 2}, "extra: Extra inputs are not permitted"),
    ("price_below", [1], "must be an object with price"),
    ("pct_move", {"pct": 0, "window_minutes": 5}, "pct: Input should be greater than 0"),
    ("pct_move", {"pct": 2, "window_minutes": 1441}, "window_minutes: Input should be less"),
    ("pct_move", {"pct": 2, "window_minutes": 0}, "window_minutes"),
    ("risk_change", {"points": 101}, "points: Input should be less than or equal to 100"),
    ("forecast_band", {"horizon": 7, "band": "90"}, "band: Input should be '80' or '95'"),
    ("forecast_band", {"horizon": 0}, "horizon"),
    ("price_sideways", {"price": 1}, "unknown condition_type 'price_sideways'"),
])
def test_bad_condition_values_are_refused_with_the_field_named(
        condition_type: str, value: object, message: str) -> None:
    with pytest.raises(InvalidCondition, match="condition") as err:
        parse_condition(condition_type, value)
    assert message in str(err.value)


def test_notification_targets_are_checked_against_their_method() -> None:
    assert validate_target("email", None) is None
    assert validate_target("telegram", " 123456 ") == "123456"
    assert validate_target("telegram", "-1001234567890") == "-1001234567890"
    assert validate_target("telegram", "@rwa_alerts") == "@rwa_alerts"
    assert validate_target("push", "https://hooks.example.com/rwa?x=1") == \
        "https://hooks.example.com/rwa?x=1"
    assert validate_target("push", "http://127.0.0.1:8080/hook") == "http://127.0.0.1:8080/hook"
    for method, target, message in [
        ("email", "someone@else.example", "account's address"),
        ("telegram", None, "need notification_target"),
        ("telegram", "not a chat", "chat id"),
        ("push", None, "webhook URL"),
        ("push", "ftp://hooks.example.com/x", "http(s) URL"),
        ("push", "https://user:pw@hooks.example.com/", "without credentials"),
        ("push", "https://hooks.example.com/\x00", "http(s) URL"),
        ("sms", "123", "unknown notification_method"),
    ]:
        with pytest.raises(InvalidCondition) as err:
            validate_target(method, target)
        assert message in str(err.value), (method, target)


# -- evaluation ---------------------------------------------------------------------


def test_price_thresholds_are_strict() -> None:
    above, below = PriceAbove(price=100), PriceBelow(price=100)
    assert evaluate(above, Market(price=100.01, at=0)).holds is True
    assert evaluate(above, Market(price=100.0, at=0)).holds is False
    assert evaluate(below, Market(price=99.99, at=0)).holds is True
    assert evaluate(below, Market(price=100.0, at=0)).holds is False
    assert evaluate(above, Market(price=120, at=0)).value == {"price": 120, "threshold": 100}


def test_price_history_keeps_one_sample_per_slot_and_the_price_then() -> None:
    h = PriceHistory(max_age_s=100, resolution_s=10)
    h.add(1000, 1.0)
    h.add(1005, 2.0)  # same 10 s slot: replaces
    h.add(1012, 3.0)
    h.add(1011, 9.0)  # out of order: ignored
    assert len(h) == 2
    assert h.price_at(999) is None
    assert h.price_at(1007) == (1005, 2.0)
    assert h.price_at(1012) == (1012, 3.0)
    h.add(1200, 4.0)  # the horizon is 1100: keeps the newest sample at or before it
    assert h.price_at(1100) == (1012, 3.0)
    assert h.oldest == 1012
    assert h.backfill([(900, 0.5), (1012, 7.0), (1100, 8.0)]) == 1
    assert h.price_at(950) == (900, 0.5) and h.price_at(1050) == (1012, 3.0)


def test_pct_move_compares_with_the_price_a_window_ago_both_ways() -> None:
    cond = PctMove(pct=5, window_minutes=10)
    h = PriceHistory(resolution_s=1)
    h.add(0, 100.0)
    h.add(300, 103.0)
    # Not 10 minutes of history yet: cannot be judged.
    early = evaluate(cond, Market(price=110, at=500, history=h))
    assert early.holds is None and "no price history" in early.value["reason"]
    h.add(600, 104.0)
    up = evaluate(cond, Market(price=105.0, at=600, history=h))
    assert up.holds is True and up.value["reference_price"] == 100.0
    assert up.value["pct_move"] == pytest.approx(5.0)
    # Ten minutes after t=300 the reference is 103: a 2.9 % move does not count.
    assert evaluate(cond, Market(price=106.0, at=900, history=h)).holds is False
    down = evaluate(cond, Market(price=97.0, at=900, history=h))
    assert down.holds is True and down.value["pct_move"] == pytest.approx(-5.825, abs=1e-3)
    assert evaluate(cond, Market(price=100, at=0, history=None)).holds is None


def test_risk_change_measures_from_the_baseline() -> None:
    cond = RiskChange(points=10)
    assert evaluate(cond, Market(price=1, at=0, risk_score=None), risk_baseline=40).holds is None
    assert evaluate(cond, Market(price=1, at=0, risk_score=55), risk_baseline=None).holds is None
    assert evaluate(cond, Market(price=1, at=0, risk_score=49.9), risk_baseline=40).holds is False
    up = evaluate(cond, Market(price=1, at=0, risk_score=50), risk_baseline=40)
    assert up.holds is True and up.value["change"] == 10
    assert evaluate(cond, Market(price=1, at=0, risk_score=29), risk_baseline=40).holds is True


def test_forecast_band_fires_outside_the_chosen_interval() -> None:
    bounds = {7: ForecastBounds(lower_80=95, upper_80=105, lower_95=90, upper_95=110)}
    c80, c95 = ForecastBand(horizon=7, band="80"), ForecastBand(horizon=7, band="95")
    assert evaluate(c80, Market(price=100, at=0, forecasts=bounds)).holds is False
    above = evaluate(c80, Market(price=106, at=0, forecasts=bounds))
    assert above.holds is True and above.value["side"] == "above"
    assert evaluate(c95, Market(price=106, at=0, forecasts=bounds)).holds is False
    below = evaluate(c95, Market(price=89, at=0, forecasts=bounds))
    assert below.holds is True and below.value["side"] == "below"
    missing = evaluate(ForecastBand(horizon=30), Market(price=1, at=0, forecasts=bounds))
    assert missing.holds is None and "horizon 30" in missing.value["reason"]
    no95 = {7: ForecastBounds(lower_80=95, upper_80=105)}
    assert evaluate(c95, Market(price=200, at=0, forecasts=no95)).holds is None


# -- the re-arm rule --------------------------------------------------------------------


def _run(prices: list[float], *, cooldown_s: float, step_s: float = 1.0) -> list[int]:
    """Feed prices to a price_above 100 alert through the rule; the indices it fired at."""
    cond = PriceAbove(price=100)
    armed, last, fired = True, None, []
    for i, p in enumerate(prices):
        now = i * step_s
        d = decide(evaluate(cond, Market(price=p, at=now)), armed=armed,
                   last_triggered_at=last, now=now, cooldown_s=cooldown_s)
        if d == "fire":
            armed, last = False, now
            fired.append(i)
        elif d == "rearm":
            armed = True
    return fired


def test_an_alert_fires_once_while_its_condition_holds_and_again_after_rearming() -> None:
    assert _run([99, 101, 102, 103, 104], cooldown_s=0) == [1]
    assert _run([99, 101, 102, 99, 101], cooldown_s=0) == [1, 4]
    # A condition already true at the start fires at once.
    assert _run([150, 150], cooldown_s=0) == [0]


def test_the_cooldown_stops_flapping_around_the_threshold() -> None:
    flapping = [101, 99, 101, 99, 101, 99, 101, 99, 101, 99, 101, 99, 101]
    assert _run(flapping, cooldown_s=0) == [0, 2, 4, 6, 8, 10, 12]
    # Re-arms only on a false reading at least 5 s after firing.
    assert _run(flapping, cooldown_s=5) == [0, 6, 12]


def test_an_unjudgeable_condition_neither_fires_nor_rearms() -> None:
    unknown = Evaluation(None, {"reason": "no data"})
    assert decide(unknown, armed=True, last_triggered_at=None, now=0, cooldown_s=0) is None
    assert decide(unknown, armed=False, last_triggered_at=None, now=99, cooldown_s=0) is None


def test_descriptions_name_the_asset_and_the_figures() -> None:
    text = describe(symbol="PAXG", condition_type="price_above",
                    condition=PriceAbove(price=3000),
                    value={"price": 3012.5, "threshold": 3000})
    assert text == "RWA Prime alert: PAXG price 3012.5 is above 3000 (price_above)."
    band = describe(symbol="BUIDL", condition_type="forecast_band",
                    condition=ForecastBand(horizon=7, band="95"),
                    value={"price": 1.2, "side": "above", "lower": 0.9, "upper": 1.1})
    assert "above the 95 % forecast band [0.9, 1.1] at 7 d" in band


# -- the lifecycle ----------------------------------------------------------------------


def test_allowed_transitions_are_the_seeds() -> None:
    allowed = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert allowed == {
        ("draft", "active"), ("draft", "deleted"),
        ("active", "paused"), ("active", "modified"), ("active", "deleted"),
        ("paused", "active"), ("paused", "modified"), ("paused", "deleted"),
        ("modified", "active"), ("modified", "deleted"),
    }
    for a in TRANSITIONS:
        for b in TRANSITIONS:
            if (a, b) in allowed:
                assert transition(a, b) == b
            else:
                with pytest.raises(InvalidTransition, match=f"that is {a} cannot become {b}"):
                    transition(a, b)


def test_actions_pass_through_the_lifecycle() -> None:
    assert apply("draft", "activate") == ("active",)
    assert apply("active", "pause") == ("paused",)
    assert apply("paused", "resume") == ("active",)
    assert apply("active", "edit") == ("modified", "active")
    assert apply("paused", "edit") == ("modified", "active")
    assert apply("draft", "edit") == ()
    assert settled("draft", "edit") == "draft"
    for state in ("draft", "active", "paused", "modified"):
        assert apply(state, "delete") == ("deleted",)


@pytest.mark.parametrize(("state", "action", "message"), [
    ("draft", "resume", "a draft is started with activate"),
    ("draft", "pause", "activate it first"),
    ("active", "resume", "already active"),
    ("active", "activate", "already active"),
    ("paused", "pause", "already paused"),
    ("paused", "activate", "started again with resume"),
    ("deleted", "resume", "it is final"),
    ("deleted", "delete", "it is final"),
    ("deleted", "edit", "deleted cannot become modified"),
])
def test_refused_actions_say_why(state: str, action: str, message: str) -> None:
    with pytest.raises(InvalidTransition) as err:
        apply(state, action)  # type: ignore[arg-type]
    assert f"cannot {action} the alert" in str(err.value) and message in str(err.value)
