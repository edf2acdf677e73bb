"""The risk score from plain inputs: bounds, monotonicity, missing data, explanations,
the composite's weights, news rules, and agreement with docs/risk-methodology.md."""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.catalog import by_id_or_symbol, load_catalog
from core.domain import Asset
from training import risk_factors, risk_model, risk_news
from training.risk import (
    COMPOSITE_WEIGHTS,
    FACTOR_MAX_POINTS,
    FACTOR_NAMES,
    METHODOLOGY_DOC,
    METHODOLOGY_VERSION,
    SUB_SCORES,
    AssetRiskInputs,
    NewsItem,
    RiskScore,
    news_from_records,
    score_asset,
)
from training.risk_news import classify

ROOT = Path(__file__).resolve().parents[3]
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _asset(asset_id: str = "paxg", **details: Any) -> Asset:
    """A catalog asset, with ``underlying_asset_details`` keys replaced (None deletes)."""
    asset = by_id_or_symbol(asset_id)
    assert asset is not None
    merged = {k: v for k, v in {**asset.underlying_asset_details, **details}.items()
              if v is not None}
    return asset.model_copy(update={"underlying_asset_details": merged})


def _closes(daily_vol: float, *, n: int = 200, seed: int = 3, start: float = 100.0) -> list[float]:
    """A price path whose log returns are one fixed noise draw scaled by ``daily_vol``."""
    z = np.random.default_rng(seed).standard_normal(n - 1)
    return list(start * np.exp(np.concatenate([[0.0], np.cumsum(daily_vol * z)])))


def _inputs(asset: Asset | None = None, **kw: Any) -> AssetRiskInputs:
    return AssetRiskInputs(asset=asset or _asset(), as_of=NOW, **kw)


def _news(title: str, *, days_ago: float = 1.0, asset_id: str = "paxg") -> NewsItem:
    return NewsItem(NOW - timedelta(days=days_ago), title, (asset_id,))


def _factor(score: RiskScore, name: str) -> risk_model.Factor:
    return next(f for f in score.factors if f.name == name)


def _sub(score: RiskScore, name: str) -> float:
    return score.sub_scores[name].score  # type: ignore[index]


def _assert_well_formed(score: RiskScore) -> None:
    for sub in score.sub_scores.values():
        assert 0.0 <= sub.score <= 100.0
        assert sub.score == pytest.approx(sum(f.points for f in sub.factors), abs=0.011)
        for factor in sub.factors:
            assert 0.0 <= factor.points <= factor.max_points
            assert factor.evidence.strip() and factor.source.strip()
            if factor.assumed:
                assert "unknown → treated as" in factor.evidence, factor
    expected = sum(COMPOSITE_WEIGHTS[n] * score.sub_scores[n].score for n in SUB_SCORES)
    assert score.composite == pytest.approx(expected, abs=0.006)
    assert 0.0 <= score.composite <= 100.0
    # NaN or infinity anywhere would fail strict JSON.
    json.dumps(score.explanation(), allow_nan=False)


# -- structure --------------------------------------------------------------------------

def test_weights_sum_to_one_and_each_sub_score_has_100_points() -> None:
    assert math.isclose(sum(COMPOSITE_WEIGHTS.values()), 1.0)
    assert set(COMPOSITE_WEIGHTS) == set(SUB_SCORES) == {"market", "credit", "regulatory",
                                                         "technical"}
    for sub in SUB_SCORES:
        assert math.isclose(sum(FACTOR_MAX_POINTS[sub].values()), 100.0), sub
    assert len(set(FACTOR_NAMES)) == len(FACTOR_NAMES)


@pytest.mark.parametrize("asset", load_catalog(), ids=lambda a: a.asset_id)
def test_every_catalog_asset_scores_without_data(asset: Asset) -> None:
    score = score_asset(_inputs(asset))
    _assert_well_formed(score)
    assert [f.name for f in score.factors] == list(FACTOR_NAMES)
    assumed = {f.name for f in score.factors if f.assumed}
    assert {"volatility", "max_drawdown", "liquidity", "credit_events", "regulatory_news",
            "security_incidents"} <= assumed
    assert score.explanation()["data_coverage"] < 1.0


def test_composite_is_the_weighted_mean_of_the_sub_scores() -> None:
    score = score_asset(_inputs(daily_closes=_closes(0.02), daily_dollar_volume=[5e4] * 200,
                                news=[_news("Regulators open probe into Paxos over PAX Gold")]))
    subs = {n: score.sub_scores[n].score for n in SUB_SCORES}
    assert len(set(subs.values())) == 4  # a real mix, so a wrong weight would show
    assert score.composite == round(0.30 * subs["market"] + 0.30 * subs["credit"]
                                    + 0.20 * subs["regulatory"] + 0.20 * subs["technical"], 2)
    explanation = score.explanation()
    assert explanation["composite"]["score"] == score.composite
    contributions = sum(s["contribution"] for s in explanation["sub_scores"].values())
    assert contributions == pytest.approx(score.composite, abs=0.03)


def test_explanation_lists_every_factor_with_its_values_and_drivers_in_order() -> None:
    score = score_asset(_inputs(daily_closes=_closes(0.01), news=[]))
    explanation = score.explanation()
    assert explanation["methodology_version"] == METHODOLOGY_VERSION
    assert explanation["higher_is_riskier"] is True
    listed = [f["name"] for s in explanation["sub_scores"].values() for f in s["factors"]]
    assert listed == list(FACTOR_NAMES)
    for sub in explanation["sub_scores"].values():
        assert sub["summary"]
        for f in sub["factors"]:
            assert set(f) == {"name", "value", "unit", "points", "max_points", "contribution",
                              "evidence", "source", "assumed"}
            assert f["contribution"] == pytest.approx(f["points"] * sub["weight"], abs=0.006)
    drivers = [d["contribution"] for d in explanation["drivers"]]
    assert drivers == sorted(drivers, reverse=True) and len(drivers) == 3
    vol = _factor(score, "volatility")
    assert not vol.assumed and "199 daily" not in vol.evidence and "90 daily" in vol.evidence
    assert f"{vol.value * 100:.2f} %" in vol.evidence


def test_scoring_is_deterministic() -> None:
    kw: dict[str, Any] = {"daily_closes": _closes(0.015), "daily_dollar_volume": [2e5] * 100,
                          "news": [_news("PAXG hit by $3M exploit on ethereum")]}
    assert score_asset(_inputs(**kw)).explanation() == score_asset(_inputs(**kw)).explanation()


# -- market -----------------------------------------------------------------------------

def test_higher_volatility_raises_market_risk() -> None:
    scores = [score_asset(_inputs(daily_closes=_closes(v))) for v in (0.0005, 0.005, 0.02, 0.05)]
    vols = [_factor(s, "volatility").points for s in scores]
    assert vols == sorted(vols) and vols[0] < vols[-1]
    markets = [_sub(s, "market") for s in scores]
    assert markets == sorted(markets) and markets[0] < markets[-1]


def test_a_deeper_drawdown_raises_market_risk() -> None:
    def crash(depth: float) -> list[float]:
        return [100.0] * 30 + [100.0 * (1 - depth)] * 10 + [100.0] * 30

    points = [_factor(score_asset(_inputs(daily_closes=crash(d))), "max_drawdown").points
              for d in (0.0, 0.02, 0.10, 0.40)]
    assert points == sorted(points) and points[0] == 0.0 and points[-1] > 20


def test_more_liquidity_lowers_market_risk_and_a_redemption_halt_maxes_it() -> None:
    points = [_factor(score_asset(_inputs(dex_liquidity_usd=usd)), "liquidity").points
              for usd in (0.0, 5e3, 2e5, 5e6, 1e9)]
    assert points == sorted(points, reverse=True) and points[-1] == 0.0 and points[0] == 25.0
    by_volume = _factor(score_asset(_inputs(daily_dollar_volume=[1e7] * 40)), "liquidity")
    assert by_volume.points == 0.0 and "median daily volume" in by_volume.evidence
    halted = score_asset(_inputs(dex_liquidity_usd=1e9,
                                 news=[_news("Paxos halts redemptions in PAXG amid squeeze")]))
    assert _factor(halted, "liquidity").points == 25.0
    assert "halts redemptions" in _factor(halted, "liquidity").evidence
    old_halt = score_asset(_inputs(dex_liquidity_usd=1e9, news=[
        _news("Paxos halts redemptions in PAXG amid squeeze", days_ago=200)]))
    assert _factor(old_halt, "liquidity").points == 0.0


def test_nav_pinned_funds_get_redemption_relief_on_liquidity() -> None:
    fund = score_asset(_inputs(_asset("buidl")))
    gold = score_asset(_inputs(_asset("paxg")))
    assert _factor(fund, "liquidity").points == pytest.approx(
        _factor(gold, "liquidity").points * risk_factors.NAV_REDEMPTION_RELIEF)


def test_a_wider_premium_to_nav_raises_market_risk() -> None:
    fund = _asset("buidl")
    points = [_factor(score_asset(_inputs(fund, nav_premium=[p, -p] * 10)), "nav_premium").points
              for p in (0.0, 0.001, 0.01, 0.08)]
    assert points == sorted(points) and points[0] == 0.0 and points[-1] == 20.0
    unknown = _factor(score_asset(_inputs(fund)), "nav_premium")
    assert unknown.assumed and unknown.value == risk_factors.DEFAULT_NAV_PREMIUM
    not_applicable = _factor(score_asset(_inputs(_asset("paxg"))), "nav_premium")
    assert not not_applicable.assumed and not_applicable.points == 0.0
    assert "not applicable" in not_applicable.evidence


# -- credit -----------------------------------------------------------------------------

def test_an_impairment_headline_raises_credit_risk_more_when_recent() -> None:
    def credit(news: list[NewsItem]) -> float:
        return _sub(score_asset(_inputs(_asset("fidu"), news=news)), "credit")

    title = "Goldfinch FIDU books 8% impairment after default on underlying assets"
    none = credit([])
    old = credit([_news(title, days_ago=300, asset_id="fidu")])
    recent = credit([_news(title, days_ago=2, asset_id="fidu")])
    two = credit([_news(title, days_ago=2, asset_id="fidu"),
                  _news("Missed payments hit assets backing FIDU", days_ago=5, asset_id="fidu")])
    assert none < old < recent < two
    # A repeated headline counts once; stories outside the window, or after it, not at all.
    assert credit([_news(title, days_ago=2, asset_id="fidu")] * 5) == recent
    assert credit([_news(title, days_ago=400, asset_id="fidu"),
                   _news(title, days_ago=-3, asset_id="fidu")]) == none
    # News about another asset does not count.
    assert credit([_news(title, days_ago=2, asset_id="paxg")]) == none
    explained = _factor(score_asset(_inputs(_asset("fidu"), news=[
        _news(title, days_ago=2, asset_id="fidu")])), "credit_events")
    assert title in explained.evidence and explained.value == 1


def test_a_falling_nav_reads_as_impairment() -> None:
    fund = _asset("ousg")
    flat = _factor(score_asset(_inputs(fund, nav=[1.0 + i / 1e4 for i in range(15)])),
                   "nav_impairment")
    fallen = _factor(score_asset(_inputs(fund, nav=[1.0, 1.01, 0.97, 0.98])), "nav_impairment")
    assert flat.points == 0.0 < fallen.points
    assert _factor(score_asset(_inputs(fund)), "nav_impairment").assumed


def test_collateral_and_structure_rank_treasuries_below_private_credit() -> None:
    def credit(asset_id: str) -> float:
        return _sub(score_asset(_inputs(_asset(asset_id), news=[])), "credit")

    assert credit("benji") < credit("jaaa") < credit("syrupusdc")
    assert credit("paxg") < credit("xaut")  # named custodian and attestation vs neither


@pytest.mark.parametrize(("asset_id", "category"), [
    ("usyc", "private_fund"),        # "Hashnote" must not match "note"
    ("usdy", "spv_or_note"),
    ("benji", "registered_fund"),
    ("paxg", "regulated_trust"),
    ("syrupusdc", "onchain_pool"),
    ("realt-13245-monica", "equity_interest"),
    ("xaut", "title_to_asset"),
    ("figr-heloc", "unknown"),
])
def test_legal_structures_fall_into_their_categories(asset_id: str, category: str) -> None:
    assert risk_factors.legal_category(_asset(asset_id))[0] == category


# -- regulatory -------------------------------------------------------------------------

def test_an_enforcement_headline_raises_regulatory_risk_and_an_approval_offsets_it() -> None:
    def regulatory(*titles: str) -> float:
        return _sub(score_asset(_inputs(news=[_news(t) for t in titles])), "regulatory")

    base = regulatory()
    probe = regulatory("Regulators open probe into Paxos over PAX Gold disclosures")
    charged = regulatory("SEC charges Paxos over PAX Gold sales")
    both = regulatory("SEC charges Paxos over PAX Gold sales",
                      "Regulators open probe into Paxos over PAX Gold disclosures")
    offset = regulatory("SEC charges Paxos over PAX Gold sales",
                        "Paxos wins regulatory approval to offer PAX Gold to more investors")
    assert base < probe < charged < both
    assert base <= offset < charged
    assert regulatory("Paxos wins regulatory approval to offer PAX Gold") == base


def test_weaker_access_controls_and_unknown_jurisdiction_raise_regulatory_risk() -> None:
    def regulatory(**details: Any) -> float:
        return _sub(score_asset(_inputs(_asset("paxg", **details), news=[])), "regulatory")

    strict = regulatory(kyc_required=True, transfer_restricted=True)
    kyc_only = regulatory(kyc_required=True, transfer_restricted=False)
    open_ = regulatory(kyc_required=False, transfer_restricted=False)
    assert strict < kyc_only < open_
    assert regulatory(jurisdiction=None) > regulatory(jurisdiction="Cayman Islands") \
        > regulatory(jurisdiction="United States")


# -- technical --------------------------------------------------------------------------

def test_an_audit_lowers_technical_risk() -> None:
    def technical(audits: list[str] | None, news: list[NewsItem] | None = None) -> float:
        asset = _asset("paxg")
        details = dict(asset.underlying_asset_details, audits=audits)
        asset = asset.model_copy(update={"underlying_asset_details": details})
        return _sub(score_asset(_inputs(asset, news=news or [])), "technical")

    none, one, two, three = (technical(a) for a in ([], ["A"], ["A", "B"], ["A", "B", "C"]))
    assert none > one > two > three
    assert technical(None) < none  # unknown is scored below a known absence of audits
    audited_in_news = technical(None, [_news("PAXG smart contracts pass independent audit "
                                             "with no critical findings")])
    assert audited_in_news == one


def test_an_exploit_and_dependencies_raise_technical_risk() -> None:
    def technical(asset: Asset, *titles: str) -> float:
        return _sub(score_asset(_inputs(asset, news=[_news(t, asset_id=asset.asset_id)
                                                     for t in titles])), "technical")

    paxg = _asset("paxg")
    assert technical(paxg, "PAXG hit by $4M exploit on ethereum") > technical(paxg)
    usdy = _asset("usdy")
    more_bridges = _asset("usdy", bridges=["Axelar", "LayerZero"])
    native = _asset("usdy", bridges=[])
    assert technical(native) < technical(usdy) < technical(more_bridges)
    assert technical(_asset("paxg", contract_upgradeable=False)) < technical(paxg)
    assert technical(_asset("paxg", oracle="Chainlink")) > technical(_asset("paxg", oracle="none"))


# -- missing and bad data ---------------------------------------------------------------

@pytest.mark.parametrize("closes", [
    [],
    [1.0],
    [float("nan")] * 50,
    [0.0, -1.0, float("inf"), 1.0, 1.0],
    [1.0, float("nan"), 1.01, None, 0.99] * 10,
], ids=["empty", "one", "all-nan", "garbage", "gaps"])
def test_short_or_broken_series_never_crash_or_leak_nan(closes: list[Any]) -> None:
    score = score_asset(_inputs(
        _asset("buidl"), daily_closes=closes, daily_dollar_volume=[float("nan"), -5.0],
        dex_liquidity_usd=float("nan"), nav_premium=[float("nan")], nav=[float("nan"), 0.0]))
    _assert_well_formed(score)


def test_missing_inputs_are_stated_with_their_default() -> None:
    bare = _asset("figr-heloc")  # no legal structure, jurisdiction, KYC or transfer facts
    score = score_asset(_inputs(bare))
    assumed = {f.name for f in score.factors if f.assumed}
    assert {"legal_structure", "jurisdiction", "legal_wrapper", "access_controls",
            "upgradeability", "audits", "oracle_dependence", "volatility"} <= assumed
    assert "no news input" in _factor(score, "regulatory_news").evidence
    assert _factor(score, "regulatory_news").value is None
    # An empty news list is known: "none found", not assumed.
    assert not _factor(score_asset(_inputs(bare, news=[])), "regulatory_news").assumed
    # A single-chain token needs no bridge, even without a catalog fact.
    no_fact = _asset("ustb", bridges=None)
    assert not _factor(score_asset(_inputs(no_fact)), "bridge_dependence").assumed


def test_extreme_inputs_stay_in_bounds() -> None:
    awful = _asset("syrupusdc", kyc_required=False, transfer_restricted=False, audits=[],
                   bridges=["A", "B", "C", "D"], oracle="Some oracle", jurisdiction=None,
                   legal_structure=None)
    news = [_news(t, days_ago=d, asset_id="syrupusdc") for d in range(0, 60, 3) for t in (
        f"Syrup USDC books {d}% impairment after default", f"SEC charges Maple {d}",
        f"syrupUSDC hit by ${d}M exploit", f"Maple halts redemptions in syrupUSDC {d}")]
    score = score_asset(_inputs(awful, daily_closes=_closes(0.5, n=400), nav_premium=[-0.9] * 30,
                                dex_liquidity_usd=0.0, news=news))
    _assert_well_formed(score)
    assert score.composite > 80
    best = score_asset(_inputs(_asset("benji"), daily_closes=[1.0] * 365,
                               dex_liquidity_usd=1e12, nav_premium=[0.0] * 30, nav=[1.0] * 30,
                               news=[]))
    _assert_well_formed(best)
    assert best.composite < 20


# -- news -------------------------------------------------------------------------------

@pytest.mark.parametrize(("title", "kinds"), [
    ("Fund books 4% impairment after default on underlying assets", {"credit_event"}),
    ("Fund reports zero defaults as loan book performs", set()),
    ("Rating agency upgrades XYZ on strong collateral coverage", set()),
    ("Regulators open probe into Acme over XYZ disclosures", {"regulatory_negative"}),
    ("Acme wins regulatory approval to offer XYZ", {"regulatory_positive"}),
    ("Acme charges 15 bps on XYZ", set()),
    ("XYZ hit by $5M exploit on base", {"security_incident"}),
    ("XYZ smart contracts pass independent audit with no critical findings", {"audit"}),
    ("Acme halts redemptions in XYZ amid liquidity squeeze", {"redemption_halt"}),
    ("Acme schedules routine XYZ contract upgrade for Monday", set()),
])
def test_headline_rules(title: str, kinds: set[str]) -> None:
    assert {k for k, _ in classify(title)} == kinds


def test_news_items_come_from_silver_rows() -> None:
    rows = [
        {"event_time": datetime(2026, 2, 1, 10), "title": " SEC charges Paxos ",
         "asset_id": None, "assets": ["PAXG", "xaut"], "url": "https://x/1", "outlet": "Wire"},
        {"event_time": NOW, "title": "", "asset_id": "paxg"},
        {"event_time": None, "title": "no time", "asset_id": "paxg"},
    ]
    [item] = news_from_records(rows)
    assert item.asset_ids == ("paxg", "xaut") and item.title == "SEC charges Paxos"
    assert item.time.tzinfo is not None and item.source == "Wire"


def test_decay_halves_every_half_life() -> None:
    assert risk_news.decay(0) == 1.0
    assert risk_news.decay(risk_news.NEWS_HALF_LIFE_DAYS) == pytest.approx(0.5)
    assert risk_news.decay(-5) == 1.0


# -- the methodology document -----------------------------------------------------------

def _doc() -> str:
    return (ROOT / METHODOLOGY_DOC).read_text(encoding="utf-8")


def test_the_methodology_doc_lists_every_factor_with_its_maximum() -> None:
    doc = _doc()
    assert METHODOLOGY_VERSION in doc
    for sub in SUB_SCORES:
        assert re.search(rf"\|\s*{sub}\s*\|\s*{COMPOSITE_WEIGHTS[sub]:.2f}\s*\|", doc), sub
        for name, max_points in FACTOR_MAX_POINTS[sub].items():
            assert re.search(rf"\|\s*`{name}`\s*\|\s*{max_points:g}\s*\|", doc), name


def test_the_methodology_doc_constants_are_the_codes() -> None:
    modules = (risk_model, risk_factors, risk_news)
    documented: dict[str, Any] = {}
    for block in re.findall(r"```python\n(.*?)```", _doc(), flags=re.DOTALL):
        for node in ast.parse(block).body:
            assert isinstance(node, ast.Assign), ast.dump(node)
            target = node.targets[0]
            assert isinstance(target, ast.Name)
            documented[target.id] = ast.literal_eval(node.value)
    for name, value in documented.items():
        owner = next((m for m in modules if hasattr(m, name)), None)
        assert owner is not None, f"{name} is documented but not in the code"
        actual = getattr(owner, name)
        assert (dict(actual) if hasattr(actual, "items") else actual) == value, name
    # Every scale and table the factors use is documented.
    tables = {n for n in vars(risk_factors) if n.isupper() and n not in {"CATALOG", "NEWS"}}
    assert tables <= set(documented), tables - set(documented)
    assert {"MARKET_WEIGHT", "CREDIT_WEIGHT", "REGULATORY_WEIGHT", "TECHNICAL_WEIGHT",
            "NEWS_HALF_LIFE_DAYS", "NEWS_WINDOW_DAYS", "REDEMPTION_HALT_DAYS"} <= set(documented)


def test_the_doc_names_every_headline_kind() -> None:
    doc = _doc()
    for kind in {k for k, _, _ in risk_news.RULES} | {"audit"}:
        assert f"`{kind}`" in doc, kind


def test_inputs_are_frozen_dataclasses() -> None:
    inputs = _inputs()
    assert replace(inputs, news=[]).news == []
