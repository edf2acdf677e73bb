"""Real US macro data shipped with statsmodels, as the default economic replay.

``statsmodels.datasets.macrodata`` holds 203 quarters (1959Q1–2009Q3) of US national
accounts, prices, money and rates, public domain, taken from FRED (Federal Reserve Bank
of St. Louis) except the unemployment rate (Bureau of Labor Statistics). It needs no
key and no network, so development and demos get genuine macro history to join
against.

Units, per ``statsmodels.datasets.macrodata.NOTE``:

=========  =============  ==========================================================
column     series         unit
=========  =============  ==========================================================
realgdp    US.REALGDP     bn chained 2005 USD, seasonally adjusted annual rate
realcons   US.REALCONS    real personal consumption expenditures, same unit
realinv    US.REALINV     real gross private domestic investment, same unit
realgovt   US.REALGOVT    real federal consumption and gross investment, same unit
realdpi    US.REALDPI     real private disposable income, same unit
cpi        US.CPI         CPI-U all items at quarter end, 1982-84 = 100, SA
m1         US.M1          M1 money stock at quarter end, SA; statsmodels gives no
                          unit, the values (139.7 in 1959Q1) are FRED's M1SL in bn USD
tbilrate   US.TBILRATE    3-month T-bill secondary-market rate, quarterly average of
                          monthly averages, % per year
unemp      US.UNEMP       unemployment rate, SA, %
pop        US.POP         total population incl. armed forces overseas at quarter end;
                          not stated, the values (177.1 in 1959Q1) are millions
infl       US.INFL        inflation, ln(cpi_t / cpi_{t-1}) * 400, % annualised
realint    US.REALINT     real interest rate, tbilrate - infl, % per year
=========  =============  ==========================================================

``unit`` strings are kept short because ``MacroPayload.unit`` allows 40 characters.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from core.envelope import Envelope, make

logger = logging.getLogger(__name__)

SOURCE = "statsmodels-macrodata"
COUNTRY = "United States"
FREQUENCY = "Q"

_CHAINED = "bn chained 2005 USD"
_COLUMNS = ["time", "series", "value", "unit", "country", "frequency"]

#: Dataset column -> (series name, unit), in the order envelopes of one quarter appear.
SERIES: dict[str, tuple[str, str]] = {
    "realgdp": ("US.REALGDP", _CHAINED),
    "realcons": ("US.REALCONS", _CHAINED),
    "realinv": ("US.REALINV", _CHAINED),
    "realgovt": ("US.REALGOVT", _CHAINED),
    "realdpi": ("US.REALDPI", _CHAINED),
    "cpi": ("US.CPI", "index 1982-84=100"),
    "m1": ("US.M1", "bn USD"),
    "tbilrate": ("US.TBILRATE", "% per year"),
    "unemp": ("US.UNEMP", "%"),
    "pop": ("US.POP", "mn persons"),
    "infl": ("US.INFL", "% annualised"),
    "realint": ("US.REALINT", "% per year"),
}


def _load() -> pd.DataFrame:
    # Imported here: statsmodels is heavy and only this loader needs it.
    from statsmodels.datasets import macrodata

    return macrodata.load_pandas().data


def quarter_start(year: float, quarter: float) -> datetime:
    """The first instant (UTC) of a quarter given as the dataset's float year/quarter."""
    return datetime(int(year), 3 * (int(quarter) - 1) + 1, 1, tzinfo=UTC)


def _observations() -> list[tuple[datetime, dict[str, Any]]]:
    """``(quarter start, payload)`` per quarter per series, in time then :data:`SERIES` order."""
    out: list[tuple[datetime, dict[str, Any]]] = []
    for record in _load().to_dict("records"):
        start = quarter_start(record["year"], record["quarter"])
        for column, (series, unit) in SERIES.items():
            payload = {
                "series": series,
                "value": float(record[column]),
                "unit": unit,
                "country": COUNTRY,
                "frequency": FREQUENCY,
            }
            out.append((start, payload))
    return out


def us_macro_frame() -> pd.DataFrame:
    """The dataset in long form, in the column layout :mod:`ingestion.replay` reads.

    Returns:
        Columns ``time``, ``series``, ``value``, ``unit``, ``country``, ``frequency``;
        one row per quarter per series, ordered by time and then as in :data:`SERIES`.
        Written to CSV or Parquet it replays as ``kind="macro"``.
    """
    rows = [{"time": start, **payload} for start, payload in _observations()]
    return pd.DataFrame(rows, columns=_COLUMNS)


def us_macro_envelopes(*, source: str = SOURCE) -> list[Envelope]:
    """One ``"macro"`` envelope per quarter per series of the statsmodels US macro data.

    Args:
        source: The envelopes' ``source``.

    Returns:
        Envelopes ordered by event time (the quarter's first day, UTC) and then as in
        :data:`SERIES`; ``asset_id`` is ``None``.
    """
    out = [
        make(source=source, kind="macro", asset_id=None, event_time=start, payload=payload)
        for start, payload in _observations()
    ]
    logger.info("built %d US macro envelopes (%d series)", len(out), len(SERIES))
    return out
