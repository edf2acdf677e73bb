"""Silver: bronze rows → validated, enriched, deduplicated rows, as Spark
``DataFrame -> DataFrame`` rules, one dataset per kind of data.

Bronze rows carry the envelope with its payload as JSON text. Each dataset has the
same three steps, all pure:

``parse_<dataset>``
    flattens the payload into columns (ticks become one-point bars, so that bars and
    ticks aggregate alike in gold) and enriches: prices quoted in another currency are
    turned into USD (:func:`to_usd`), and the premium of the market price over the NAV
    is computed, NAV staying a column of its own, apart from ``close``.
``validate_<dataset>``
    adds ``rule``, the first rule the row breaks (null for a valid row), in the order
    of :data:`RULES`.
:func:`to_silver`
    keeps the valid rows, one per natural key (:func:`natural_key`), in the dataset's
    silver shape (:data:`COLUMNS`); :func:`rejected` gives the rows for the quarantine.

Rows that carry no ``asset_id`` but name a symbol or a contract in their payload can
be given one from the catalog first (:func:`resolve_asset_ids`).

Outlier policy. ``price_outlier`` and ``onchain_outlier`` are *soft* rules
(:data:`SOFT_RULES`): a row that breaks only a soft rule may be a real move (an
impairment, an airdrop), so it stays in silver with ``outlier = true`` and is also
quarantined with its rule, which makes it findable; gold aggregates leave flagged
rows out. A row that breaks a hard rule goes to the quarantine only, and the soft
rules are not checked on it.

Outliers are found with a Hampel filter (:func:`flag_outliers`): per series, the
distance of the log value from the median of its neighbours (``window`` rows on each
side, over the batch plus an optional ``context`` of earlier silver rows, which only
serves as neighbours), divided by the series' robust scale (1.4826 × the median
absolute distance, floored at ``min_scale`` so that a series that barely moves does
not flag every tick). ``|z| > threshold`` flags. A spike, or a run of up to
``window`` bad prints, stands out from its neighbours' median; a lasting level shift
is not flagged once ``window`` rows after it are seen, but at the end of a batch,
where only earlier rows are neighbours, its first few rows are.

Dedup keeps, per natural key, the row ingested first (ties broken by payload text),
matching :func:`new_rows`, which lets into silver only keys it does not hold yet:
the first version of a record wins, a replay or a re-publication adds nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Literal

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from core.domain import Asset
from pipeline import aggregates

Dataset = Literal["prices", "onchain", "macro", "news"]

#: The natural key of price rows: replays and at-least-once delivery collapse onto it
#: (every dataset's is given by :func:`natural_key`).
NATURAL_KEY = ["source", "kind", "asset_id", "event_time"]

#: Envelope kinds of each silver dataset.
KINDS: dict[Dataset, tuple[str, ...]] = {
    "prices": ("bar", "tick"),
    "onchain": ("onchain",),
    "macro": ("macro",),
    "news": ("news",),
}

PAYLOAD_SCHEMA = T.StructType(
    [
        T.StructField("open", T.DoubleType()),
        T.StructField("high", T.DoubleType()),
        T.StructField("low", T.DoubleType()),
        T.StructField("close", T.DoubleType()),
        T.StructField("price", T.DoubleType()),
        T.StructField("volume", T.DoubleType()),
        T.StructField("nav", T.DoubleType()),
        T.StructField("interval", T.StringType()),
        T.StructField("currency", T.StringType()),
    ]
)

#: Counts and flows: never negative.
ONCHAIN_NON_NEGATIVE = [
    "holder_count", "transfer_count", "transfer_volume", "dex_liquidity", "exchange_inflow",
    "exchange_outflow", "tvl_usd",
]
#: Every metric an on-chain row may carry; a row needs at least one.
ONCHAIN_METRICS = [*ONCHAIN_NON_NEGATIVE, "nav", "apy"]
#: Metrics that are whole numbers in silver.
_ONCHAIN_COUNTS = ("holder_count", "transfer_count")
ONCHAIN_PAYLOAD_SCHEMA = T.StructType(
    # Counts are read as doubles and cast after the checks: from_json gives null, not
    # an error, for 12.0 in a long field, which would hide a broken producer.
    [T.StructField(m, T.DoubleType()) for m in ONCHAIN_METRICS]
    + [T.StructField("chain", T.StringType())]
)
#: Bounds of ``apy`` in percent per year, as the envelope's contract has them.
APY_RANGE = (-100.0, 1000.0)

MACRO_PAYLOAD_SCHEMA = T.StructType(
    [
        T.StructField("series", T.StringType()),
        T.StructField("value", T.DoubleType()),
        T.StructField("unit", T.StringType()),
        T.StructField("country", T.StringType()),
        T.StructField("frequency", T.StringType()),
    ]
)

NEWS_PAYLOAD_SCHEMA = T.StructType(
    [
        T.StructField("title", T.StringType()),
        T.StructField("body", T.StringType()),
        T.StructField("url", T.StringType()),
        T.StructField("outlet", T.StringType()),
        T.StructField("lang", T.StringType()),
        T.StructField("assets", T.ArrayType(T.StringType())),
        T.StructField("issuers", T.ArrayType(T.StringType())),
    ]
)

#: The price silver shape as it was first written; :data:`COLUMNS` extends it.
SILVER_COLUMNS = [
    "source", "kind", "asset_id", "event_time", "open", "high", "low", "close", "volume",
    "nav", "ingest_time", "date",
]

#: Silver shape per dataset. ``kind`` is kept in each, so that every natural key is a
#: set of stored columns. Prices: ``nav`` apart from ``close``, ``premium_to_nav`` =
#: close / nav - 1 where both are known, ``interval`` of a bar (null for a tick),
#: ``outlier`` per the module's policy; all prices in USD.
COLUMNS: dict[Dataset, list[str]] = {
    "prices": [*SILVER_COLUMNS[:10], "premium_to_nav", "interval", "outlier",
               *SILVER_COLUMNS[10:]],
    "onchain": ["source", "kind", "asset_id", "event_time", *ONCHAIN_METRICS, "chain", "outlier",
                "ingest_time", "date"],
    "macro": ["source", "kind", "series", "event_time", "value", "unit", "country", "frequency",
              "ingest_time", "date"],
    "news": ["source", "kind", "asset_id", "event_time", "title", "body", "url", "outlet", "lang",
             "assets", "issuers", "ingest_time", "date"],
}

#: Rule names per dataset, in the order they are checked.
RULES: dict[Dataset, tuple[str, ...]] = {
    "prices": ("unknown_asset", "unknown_currency", "missing_price", "non_positive_price",
               "ohlc_inconsistent", "negative_volume", "future_timestamp", "too_old",
               "price_outlier"),
    "onchain": ("unknown_asset", "empty_metrics", "negative_metric", "nav_non_positive",
                "apy_out_of_range", "future_timestamp", "too_old", "onchain_outlier"),
    "macro": ("missing_series", "non_finite_value", "future_timestamp", "too_old"),
    "news": ("empty_title", "unknown_asset", "future_timestamp", "too_old"),
}

#: Rules whose rows stay in silver (flagged ``outlier``) as well as in the quarantine.
SOFT_RULES: frozenset[str] = frozenset({"price_outlier", "onchain_outlier"})

#: Oldest event time accepted; anything earlier is a broken clock, not history.
OLDEST_EVENT = "2000-01-01 00:00:00"
#: Macro history is long (the statsmodels replay starts in 1959).
OLDEST_MACRO_EVENT = "1900-01-01 00:00:00"
#: How far ahead of the clock an event time may be before it counts as the future
#: (the clock is read to the minute, rounded up: see :func:`_clock`).
FUTURE_TOLERANCE = "INTERVAL 5 MINUTES"

#: USD per unit of a currency; a price in a currency not listed here is refused.
DEFAULT_USD_RATES: Mapping[str, float] = {"USD": 1.0, "USDC": 1.0, "USDT": 1.0}

#: Default outlier settings: robust z above which a row is flagged, neighbours on each
#: side, and the floor of the robust scale in log units (0.1 % for prices, 1 % for
#: holder counts, which move by whole holders).
OUTLIER_THRESHOLD = 8.0
OUTLIER_WINDOW = 5
PRICE_MIN_SCALE = 1e-3
HOLDER_MIN_SCALE = 1e-2

#: Column of a price row's payload hash while its payload text is left behind.
PAYLOAD_HASH = "payload_hash"

#: Accuracy of the series' median distance (a relative rank error of 1 / accuracy): an
#: exact median keeps every distinct value of the series in a hash map.
MEDIAN_ACCURACY = 10_000

# 1 / Φ⁻¹(3/4): makes the median absolute deviation estimate a normal's sigma.
_MAD_TO_SIGMA = 1.4826


# -- keys ------------------------------------------------------------------------------

#: Key columns computed from stored ones rather than stored: a news story is its URL,
#: or its title where it has none.
_DERIVED_KEY_COLUMNS = {"story": lambda: F.coalesce(F.col("url"), F.col("title"))}


def natural_key(kind: str) -> list[str]:
    """The natural key of an envelope kind (or a dataset name).

    ``(source, kind, asset_id, event_time)`` for bars and ticks; on-chain rows add
    ``chain``, as a source may report a token on each of its chains at the same time;
    ``(source, kind, series, event_time)`` for macro; ``(source, kind, story,
    event_time)`` for news, where ``story`` is the URL, or the title where the URL is
    missing (computed, see :func:`with_key`). Null key parts compare equal.

    Raises:
        ValueError: For a kind no dataset holds.
    """
    if kind == "macro":
        return ["source", "kind", "series", "event_time"]
    if kind == "news":
        return ["source", "kind", "story", "event_time"]
    if kind == "onchain":
        return ["source", "kind", "asset_id", "chain", "event_time"]
    if kind in ("bar", "tick", "prices"):
        return list(NATURAL_KEY)
    raise ValueError(f"no natural key for kind {kind!r}")


def with_key(frame: DataFrame, kind: str) -> DataFrame:
    """``frame`` with the computed columns of ``kind``'s natural key added."""
    for name in natural_key(kind):
        if name in _DERIVED_KEY_COLUMNS and name not in frame.columns:
            frame = frame.withColumn(name, _DERIVED_KEY_COLUMNS[name]())
    return frame


def deduplicate(frame: DataFrame, kind: str) -> DataFrame:
    """One row per natural key: the one ingested first (ties broken by payload text)."""
    key = natural_key(kind)
    order = [F.col(c).asc_nulls_last() for c in ("ingest_time", "payload") if c in frame.columns]
    window = Window.partitionBy(*key).orderBy(*order or [F.lit(0)])
    added = [c for c in key if c not in frame.columns]
    return (with_key(frame, kind).withColumn("_first", F.row_number().over(window))
            .where(F.col("_first") == 1).drop("_first", *added))


def new_rows(batch: DataFrame, existing: DataFrame, *, dataset: Dataset = "prices") -> DataFrame:
    """Rows of ``batch`` whose natural key silver does not hold yet."""
    key = natural_key(dataset)
    added = [c for c in key if c not in batch.columns]
    left = with_key(batch, dataset).alias("_new")
    right = with_key(existing, dataset).select(*key).alias("_old")
    same = [F.col(f"_new.{c}").eqNullSafe(F.col(f"_old.{c}")) for c in key]
    return left.join(right, on=same, how="left_anti").drop(*added)


# -- enrichment ------------------------------------------------------------------------

MAPPING_SCHEMA = "asset_id string, symbol string, chain string, contract_address string"


def asset_mapping_rows(assets: Iterable[Asset]) -> list[tuple[str, str, str, str | None]]:
    """``(asset_id, symbol, chain, contract_address)`` per catalog asset, for
    :func:`asset_mapping`; the contract is on the asset's primary chain."""
    return [(a.asset_id, a.symbol, a.blockchain_network, a.contract_address) for a in assets]


def asset_mapping(spark: SparkSession, assets: Iterable[Asset]) -> DataFrame:
    """The catalog as a mapping frame in :data:`MAPPING_SCHEMA` for :func:`resolve_asset_ids`."""
    return spark.createDataFrame(asset_mapping_rows(assets), schema=MAPPING_SCHEMA)


def _address(column: Column) -> Column:
    """A contract address compared as written, except EVM hex, which is case-insensitive."""
    trimmed = F.trim(column)
    return F.when(trimmed.startswith("0x") | trimmed.startswith("0X"),
                  F.lower(trimmed)).otherwise(trimmed)


def resolve_asset_ids(bronze: DataFrame, mapping: DataFrame) -> DataFrame:
    """Fill a missing ``asset_id`` from the payload's contract or symbol.

    A row without ``asset_id`` is matched on ``(chain, contract_address)`` (or
    ``address``) when the payload names the chain, on the address alone when it names
    none and the address belongs to one asset only, and failing both on ``symbol``
    (case-insensitive). A contract wins over a symbol, which tokens share in the wild.
    Rows that match nothing keep a null ``asset_id`` for validation to judge.

    Args:
        bronze: Rows with ``asset_id`` and ``payload`` (JSON text).
        mapping: The catalog in :data:`MAPPING_SCHEMA` (see :func:`asset_mapping`).
    """
    def field(name: str) -> Column:
        return F.get_json_object("payload", f"$.{name}")

    keyed = bronze.select(
        "*",
        F.lower(F.trim(field("symbol"))).alias("_sym"),
        _address(F.coalesce(field("contract_address"), field("address"))).alias("_addr"),
        F.lower(F.trim(field("chain"))).alias("_chain"),
    )
    contracts = mapping.where(F.col("contract_address").isNotNull()).select(
        F.lower(F.trim("chain")).alias("_chain"), _address(F.col("contract_address")).alias("_addr"),
        F.col("asset_id").alias("_by_chain"),
    ).dropDuplicates(["_chain", "_addr"])
    sole = (contracts.groupBy("_addr").agg(F.countDistinct("_by_chain").alias("_n"),
                                           F.first("_by_chain").alias("_by_addr"))
            .where(F.col("_n") == 1).drop("_n"))
    symbols = (mapping.select(F.lower(F.trim("symbol")).alias("_sym"),
                              F.col("asset_id").alias("_by_sym"))
               .dropDuplicates(["_sym"]))
    joined = (keyed.join(F.broadcast(contracts), on=["_chain", "_addr"], how="left")
              .join(F.broadcast(sole), on="_addr", how="left")
              .join(F.broadcast(symbols), on="_sym", how="left"))
    by_addr = F.when(F.col("_chain").isNull(), F.col("_by_addr"))
    asset = F.coalesce(F.col("asset_id"), F.col("_by_chain"), by_addr, F.col("_by_sym"))
    return joined.withColumn("asset_id", asset).select(*bronze.columns)


def to_usd(frame: DataFrame, columns: Iterable[str], *,
           rates: Mapping[str, float] | None = None) -> DataFrame:
    """Money ``columns`` in USD, from the row's ``currency`` (USD where null).

    Adds ``usd_rate`` (USD per unit of the currency, null where ``rates`` has none,
    which leaves the columns null too: validation refuses such a row).

    Args:
        rates: USD per unit, keyed by currency code (case-insensitive);
            :data:`DEFAULT_USD_RATES` by default.
    """
    table = {k.upper(): float(v)
             for k, v in (DEFAULT_USD_RATES if rates is None else rates).items()}
    code = F.upper(F.trim(F.coalesce(F.col("currency"), F.lit("USD"))))
    lookup = F.create_map(*[F.lit(x) for kv in table.items() for x in kv])
    rate = F.try_element_at(lookup, code) if table else F.lit(None).cast("double")
    frame = frame.withColumn("usd_rate", rate)
    for c in columns:
        frame = frame.withColumn(c, F.col(c) * F.col("usd_rate"))
    return frame


# -- outliers --------------------------------------------------------------------------

def _median_of_sorted(values: Column, n: Column | None = None) -> Column:
    """The exact median of the first ``n`` values (all by default) of a sorted array
    column, such as one sorted with its nulls last; null when ``n`` is 0."""
    n = F.size(values) if n is None else n
    lower = F.element_at(values, F.floor((n + 1) / 2).cast("int"))
    upper = F.element_at(values, (F.floor(n / 2) + 1).cast("int"))
    return F.when(n > 0, (lower + upper) / 2)


def flag_outliers(frame: DataFrame, value: Column, *, series: list[str],
                  threshold: float = OUTLIER_THRESHOLD, window: int = OUTLIER_WINDOW,
                  min_scale: float = PRICE_MIN_SCALE, name: str = "outlier",
                  order: list[Column] | None = None,
                  also: Mapping[str, Column] | None = None) -> DataFrame:
    """Add boolean ``name``: the row's ``value`` is a Hampel outlier within its series.

    ``z = |value - median of the values among the row and its window neighbours on each
    side|`` over ``max(1.4826 * median of those distances over the series, min_scale)``,
    ordered by ``event_time``; ``z > threshold`` flags. Rows whose ``value`` is null are
    never flagged and lend no value to their neighbours' medians (they still take a
    place in the window: a window over the valid rows alone would need a sort of its
    own). Pass log values, so that scale and floor are relative.

    ``order`` refines the ordering (it must start with ``event_time``; rows with the
    same event time are neighbours in either order), and ``also`` names further columns
    to add in the same projection as the neighbours: window columns over the same
    series and ``order`` are then computed in the same pass over the sorted rows (Spark
    merges window expressions only within one projection).
    """
    frame = frame.withColumn("_v", value)
    ordered = Window.partitionBy(*series).orderBy(*(order or [F.col("event_time")]))
    # Spark has no windowed median. The neighbours come as lag/lead columns, which
    # Spark computes in one pass, then are sorted as one small array (nulls last) whose
    # middle is picked; collect_list over a sliding frame re-aggregates the whole frame
    # for every row and was the most expensive step of silver.
    near = [F.lag("_v", k).over(ordered) for k in range(window, 0, -1)]
    near += [F.col("_v")] + [F.lead("_v", k).over(ordered) for k in range(1, window + 1)]
    frame = frame.select("*", *[c.alias(f"_n{i}") for i, c in enumerate(near)],
                         *[c.alias(n) for n, c in (also or {}).items()])
    names = [f"_n{i}" for i in range(len(near))]
    count = sum((F.col(n).isNotNull().cast("int") for n in names), F.lit(0))
    # Missing neighbours become +inf, which sorts them last as nulls would: an array
    # without nulls is sorted as a primitive array, one with nulls element by element.
    filled = F.array(*[F.coalesce(F.col(n), F.lit(float("inf"))) for n in names])
    middle = _median_of_sorted(F.sort_array(filled), count)
    frame = (frame.withColumn("_dev", F.abs(F.col("_v") - middle)).drop(*names))
    spread = F.expr(f"percentile_approx(_dev, 0.5, {MEDIAN_ACCURACY})").over(
        Window.partitionBy(*series))
    scale = F.greatest(F.lit(_MAD_TO_SIGMA) * spread, F.lit(min_scale))
    flagged = F.coalesce(F.col("_dev") / scale > threshold, F.lit(False))
    return frame.withColumn(name, flagged).drop("_v", "_dev")


def copy_order(frame: DataFrame, *, key: list[str], series: list[str]) -> list[Column]:
    """The ordering of :func:`copy_mark` within a series of ``frame``."""
    rest = [c for c in key if c not in series and c != "event_time"]
    order = [F.col("event_time"), *[F.col(c) for c in rest]]
    if "_ctx" in frame.columns:
        order.append(F.col("_ctx"))
    order.append(F.col("rule").isNotNull())
    order += [F.col(c).asc_nulls_last() for c in ("ingest_time", PAYLOAD_HASH, "payload")
              if c in frame.columns]
    return order


def copy_mark(frame: DataFrame, *, key: list[str], series: list[str]) -> Column:
    """Whether a row of ``frame`` is a later copy of a valid row with the same natural
    ``key`` (the one :func:`deduplicate` would drop), as a window column.

    Rows are ordered within each series (``series`` ⊆ ``key``) by ``event_time``, the
    rest of the key, rows of the batch before ``_ctx`` context rows, valid rows
    (``rule`` null) before rejected ones, then ``ingest_time`` and ``payload``: a row is
    a copy when the row before it has the same key and is a valid batch row
    (:func:`copy_order`). The outlier window takes the same ordering, so both share one
    shuffle, one sort and one pass, where a window over the key would need its own.
    """
    rest = [c for c in key if c not in series and c != "event_time"]
    w = Window.partitionBy(*series).orderBy(*copy_order(frame, key=key, series=series))
    same = [F.lag(c).over(w).eqNullSafe(F.col(c)) for c in ("event_time", *rest)]
    prior_valid = F.lag(F.col("rule").isNull()).over(w)
    if "_ctx" in frame.columns:
        prior_valid = prior_valid & ~F.lag("_ctx").over(w)
    copy = F.coalesce(prior_valid, F.lit(False))
    for condition in same:
        copy = copy & condition
    return copy


def _soft_outliers(tagged: DataFrame, column: str, *,
                   transform: Callable[[Column], Column], rule: str,
                   series: list[str], key: list[str], context: DataFrame | None,
                   threshold: float, window: int, min_scale: float) -> DataFrame:
    """Tag rows that broke no hard rule with the soft ``rule`` where ``transform`` of
    ``column`` is an outlier (see :func:`flag_outliers`), add ``outlier``, and mark
    later copies of a natural ``key`` in ``duplicate`` (see :func:`copy_mark`).

    ``context`` rows (they need ``series``, ``event_time`` and ``column``) serve as
    neighbours only and do not come back.
    """
    rows = tagged.withColumn("_ctx", F.lit(False))
    if context is not None:
        ctx = (context.select(*series, "event_time", column)
               .withColumn("_ctx", F.lit(True)).withColumn("rule", F.lit(None).cast("string")))
        rows = rows.unionByName(ctx, allowMissingColumns=True)
    # The copy marks and the outlier neighbours are window columns over one ordering,
    # added in one projection: Spark sorts once and computes both in one pass.
    checked = F.when(F.col("rule").isNull(), transform(F.col(column)))
    flagged = flag_outliers(rows, checked, series=series, threshold=threshold, window=window,
                            min_scale=min_scale, name="outlier",
                            order=copy_order(rows, key=key, series=series),
                            also={"duplicate": copy_mark(rows, key=key, series=series)})
    return (flagged.where(~F.col("_ctx")).drop("_ctx")
            .withColumn("rule", F.when(F.col("outlier"), F.lit(rule)).otherwise(F.col("rule"))))


# -- rules -----------------------------------------------------------------------------

def _tag(frame: DataFrame, rules: list[tuple[str, Column]]) -> DataFrame:
    """Add ``rule``: the first of ``rules`` whose condition holds (a null condition,
    from a null field, counts as broken), or null."""
    rule = F.lit(None).cast("string")
    for name, broken in reversed(rules):
        rule = F.when(F.coalesce(broken, F.lit(True)), F.lit(name)).otherwise(rule)
    return frame.withColumn("rule", rule)


def _clock(now: datetime) -> datetime:
    """``now`` rounded up to the whole minute, the clock the time rules read.

    Spark writes a timestamp literal into the code it generates for a batch, and reuses
    generated code only for identical text: with the exact clock every micro-batch was
    compiled anew and ran cold. Rounding up only ever widens the tolerance, by under a
    minute.
    """
    whole = now.replace(second=0, microsecond=0)
    return whole if whole == now else whole + timedelta(minutes=1)


def _time_rules(now: datetime, oldest: str) -> list[tuple[str, Column]]:
    return [
        ("future_timestamp",
         F.col("event_time")
         > F.lit(_clock(now)).cast("timestamp") + F.expr(FUTURE_TOLERANCE)),
        ("too_old", F.col("event_time") < F.lit(oldest).cast("timestamp")),
    ]


def _not_finite(column: Column) -> Column:
    return F.isnan(column) | (F.abs(column) == float("inf"))


def _blank(column: Column) -> Column:
    return column.isNull() | (F.trim(column) == "")


def _parsed_payload(bronze: DataFrame, schema: T.StructType, *,
                    typed: str | None = None) -> tuple[DataFrame, Column]:
    """``bronze`` with its payload parsed once into the struct column ``_p``, and that
    column. Referenced inside CASE branches, an inline ``from_json`` is parsed again for
    every reference (common subexpressions are not shared across conditional branches),
    which made the JSON parse most of silver's cost; a projection of its own is kept
    apart by the optimizer, as collapsing it would repeat an expensive expression.

    ``typed`` names a bronze column holding the same struct already typed by the sink
    (``pipeline.bronze.price_fields``); where it is set the JSON is not parsed at all
    (coalesce evaluates its second argument only for rows whose first is null).
    """
    parsed = F.from_json(F.col("payload"), schema)
    if typed is not None and typed in bronze.columns:
        parsed = F.coalesce(F.col(typed), parsed)
    return bronze.withColumn("_p", parsed), F.col("_p")


# -- prices ----------------------------------------------------------------------------

def parse_prices(bronze: DataFrame, *, rates: Mapping[str, float] | None = None) -> DataFrame:
    """Bronze price rows → flat price rows in USD (ticks become one-point bars).

    Adds ``premium_to_nav`` (close / nav - 1 where both are known) and ``usd_rate``
    (see :func:`to_usd`); ``interval`` is a bar's, null for a tick.
    """
    bronze, p = _parsed_payload(bronze, PAYLOAD_SCHEMA, typed="price_fields")
    tick = F.col("kind") == "tick"
    flat = bronze.select(
        "source", "kind", "asset_id", "event_time", "ingest_time", "payload",
        F.when(tick, p["price"]).otherwise(p["open"]).alias("open"),
        F.when(tick, p["price"]).otherwise(p["high"]).alias("high"),
        F.when(tick, p["price"]).otherwise(p["low"]).alias("low"),
        F.when(tick, p["price"]).otherwise(p["close"]).alias("close"),
        F.coalesce(p["volume"], F.lit(0.0)).alias("volume"),
        p["nav"].alias("nav"),
        F.when(~tick, F.coalesce(p["interval"], F.lit("1h"))).alias("interval"),
        p["currency"].alias("currency"),
    )
    usd = to_usd(flat, ["open", "high", "low", "close", "nav"], rates=rates).drop("currency")
    premium = F.when(F.col("nav") > 0, F.col("close") / F.col("nav") - 1)
    return usd.withColumn("premium_to_nav", premium)


def _price_rules(known_assets: Column, now: datetime) -> list[tuple[str, Column]]:
    """(rule name, condition that breaks it) of the hard price rules, checked in order."""
    prices = [F.col(c) for c in ("open", "high", "low", "close")]
    return [
        ("unknown_asset", ~known_assets),
        ("unknown_currency", F.col("usd_rate").isNull()),
        ("missing_price", F.greatest(*[(c.isNull() | _not_finite(c)).cast("int")
                                       for c in prices]) == 1),
        ("non_positive_price", F.least(*prices) <= 0),
        ("ohlc_inconsistent",
         (F.col("low") > F.least("open", "close")) | (F.col("high") < F.greatest("open", "close"))),
        ("negative_volume", (F.col("volume") < 0) | _not_finite(F.col("volume"))),
        *_time_rules(now, OLDEST_EVENT),
    ]


def validate_prices(parsed: DataFrame, known_asset_ids: list[str], now: datetime, *,
                    context: DataFrame | None = None,
                    outlier_threshold: float = OUTLIER_THRESHOLD,
                    outlier_window: int = OUTLIER_WINDOW,
                    outlier_min_scale: float = PRICE_MIN_SCALE) -> DataFrame:
    """Add ``rule`` (the first rule a row breaks, null for a valid row) and ``outlier``.

    ``price_outlier`` is checked on rows that pass every other rule: the log close
    against its neighbours of the same asset (all sources and kinds), see
    :func:`flag_outliers`.

    Args:
        parsed: From :func:`parse_prices`.
        context: Earlier silver price rows (``asset_id``, ``event_time``, ``close``),
            used as neighbours only, e.g. the last hours before the batch.
    """
    if "usd_rate" not in parsed.columns:  # parsed by an older caller: USD only
        parsed = parsed.withColumn("usd_rate", F.lit(1.0))
    tagged = _tag(parsed, _price_rules(F.col("asset_id").isin(known_asset_ids), now))
    # The windows below shuffle and sort every row, and the raw payload was a third of a
    # row's bytes. Rows a hard rule rejected keep it for the quarantine; the others carry
    # its hash, which breaks ties between copies as the text did, and an outlier's raw
    # payload is looked up again by :func:`rejected` (outliers are few).
    tagged = (tagged.withColumn(PAYLOAD_HASH, F.xxhash64("payload"))
              .withColumn("payload", F.when(F.col("rule").isNotNull(), F.col("payload"))))
    return _soft_outliers(tagged, "close", transform=F.log, rule="price_outlier",
                          series=["asset_id"], key=natural_key("prices"), context=context, threshold=outlier_threshold,
                          window=outlier_window, min_scale=outlier_min_scale)


# -- on-chain --------------------------------------------------------------------------

def parse_onchain(bronze: DataFrame) -> DataFrame:
    """Bronze on-chain rows → one column per metric, plus ``chain``."""
    bronze, p = _parsed_payload(bronze, ONCHAIN_PAYLOAD_SCHEMA)
    return bronze.select(
        "source", "kind", "asset_id", "event_time", "ingest_time", "payload",
        *[p[m].alias(m) for m in ONCHAIN_METRICS],
        F.lower(F.trim(p["chain"])).alias("chain"),
    )


def validate_onchain(parsed: DataFrame, known_asset_ids: list[str], now: datetime, *,
                     context: DataFrame | None = None,
                     outlier_threshold: float = OUTLIER_THRESHOLD,
                     outlier_window: int = OUTLIER_WINDOW,
                     outlier_min_scale: float = HOLDER_MIN_SCALE) -> DataFrame:
    """Add ``rule`` and ``outlier`` to on-chain rows.

    Rules: ``unknown_asset``; ``empty_metrics`` (no metric at all); ``negative_metric``
    (a count or flow below zero or not finite); ``nav_non_positive``;
    ``apy_out_of_range`` (outside :data:`APY_RANGE` or not finite);
    ``future_timestamp``; ``too_old``; and the soft ``onchain_outlier``: a holder count
    out of line with its neighbours of the same source, asset and chain.

    Args:
        context: Earlier silver on-chain rows, neighbours only (see
            :func:`validate_prices`).
    """
    metrics = [F.col(m) for m in ONCHAIN_METRICS]
    negative = F.greatest(*[F.coalesce((F.col(m) < 0) | _not_finite(F.col(m)), F.lit(False))
                            .cast("int") for m in ONCHAIN_NON_NEGATIVE]) == 1
    apy = F.col("apy")
    rules = [
        ("unknown_asset", ~F.col("asset_id").isin(known_asset_ids)),
        ("empty_metrics", F.coalesce(*metrics).isNull()),
        ("negative_metric", negative),
        ("nav_non_positive", F.coalesce((F.col("nav") <= 0) | _not_finite(F.col("nav")),
                                        F.lit(False))),
        ("apy_out_of_range", F.coalesce((apy < APY_RANGE[0]) | (apy > APY_RANGE[1])
                                        | _not_finite(apy), F.lit(False))),
        *_time_rules(now, OLDEST_EVENT),
    ]
    tagged = _tag(parsed, rules)
    flagged = _soft_outliers(tagged, "holder_count", transform=F.log1p, rule="onchain_outlier",
                             series=["source", "asset_id", "chain"],
                             key=natural_key("onchain"), context=context,
                             threshold=outlier_threshold, window=outlier_window,
                             min_scale=outlier_min_scale)
    return flagged.select(*[F.when(~_not_finite(F.col(c)), F.col(c).cast("long")).alias(c)
                            if c in _ONCHAIN_COUNTS else c for c in flagged.columns])


# -- macro -----------------------------------------------------------------------------

def parse_macro(bronze: DataFrame) -> DataFrame:
    """Bronze macro rows → ``series``, ``value``, ``unit``, ``country``, ``frequency``."""
    bronze, p = _parsed_payload(bronze, MACRO_PAYLOAD_SCHEMA)
    return bronze.select(
        "source", "kind", "asset_id", "event_time", "ingest_time", "payload",
        F.trim(p["series"]).alias("series"), p["value"].alias("value"),
        p["unit"].alias("unit"), p["country"].alias("country"), p["frequency"].alias("frequency"),
    )


def validate_macro(parsed: DataFrame, now: datetime) -> DataFrame:
    """Add ``rule`` to macro rows: ``missing_series``, ``non_finite_value`` (null, NaN or
    infinite), ``future_timestamp`` (the same 5 minutes' tolerance as all kinds) and
    ``too_old`` (before :data:`OLDEST_MACRO_EVENT`)."""
    value = F.col("value")
    return _tag(parsed, [
        ("missing_series", _blank(F.col("series"))),
        ("non_finite_value", value.isNull() | _not_finite(value)),
        *_time_rules(now, OLDEST_MACRO_EVENT),
    ])


# -- news ------------------------------------------------------------------------------

def parse_news(bronze: DataFrame) -> DataFrame:
    """Bronze news rows → article columns; ``assets`` and ``issuers`` as arrays."""
    bronze, p = _parsed_payload(bronze, NEWS_PAYLOAD_SCHEMA)
    empty = F.array().cast("array<string>")
    return bronze.select(
        "source", "kind", "asset_id", "event_time", "ingest_time", "payload",
        p["title"].alias("title"), p["body"].alias("body"),
        F.nullif(F.trim(p["url"]), F.lit("")).alias("url"),
        p["outlet"].alias("outlet"), F.coalesce(p["lang"], F.lit("en")).alias("lang"),
        F.coalesce(p["assets"], empty).alias("assets"),
        F.coalesce(p["issuers"], empty).alias("issuers"),
    )


def validate_news(parsed: DataFrame, known_asset_ids: list[str], now: datetime) -> DataFrame:
    """Add ``rule`` to news rows: ``empty_title``, ``unknown_asset`` (only where the
    envelope names an asset), ``future_timestamp``, ``too_old``."""
    asset = F.col("asset_id")
    return _tag(parsed, [
        ("empty_title", _blank(F.col("title"))),
        ("unknown_asset", asset.isNotNull() & ~asset.isin(known_asset_ids)),
        *_time_rules(now, OLDEST_EVENT),
    ])


# -- silver and quarantine -------------------------------------------------------------

def to_silver(validated: DataFrame, *, dataset: Dataset = "prices") -> DataFrame:
    """Rows that broke no rule or only a soft one, one per natural key, in the
    dataset's silver shape (:data:`COLUMNS`)."""
    kept = validated.where(F.col("rule").isNull() | F.col("rule").isin(*SOFT_RULES))
    if "outlier" in COLUMNS[dataset] and "outlier" not in kept.columns:
        kept = kept.withColumn("outlier", F.lit(False))
    # Validation marked the copies already where it sorted the rows anyway.
    unique = (kept.where(~F.col("duplicate")) if "duplicate" in kept.columns
              else deduplicate(kept, dataset))
    return (unique
            .withColumn("date", F.to_date("event_time"))
            .select(*COLUMNS[dataset]))


def write(rows: DataFrame, path: str, *, mode: str = "append") -> None:
    """Write silver ``rows`` to the dataset folder ``path``, partitioned by date.

    The rows are shuffled by date into one partition per core before the write: each
    date then lands in one file per batch. Silver's windows run in many small partitions
    to spread heavy assets evenly, and each would otherwise write a file per date it
    holds; coalescing them instead keeps the files few but glues the partitions into
    fixed halves, which left one core with most of the assets.

    Floating-point columns are written without Parquet's dictionary encoding: prices
    and metrics are nearly all distinct, so the dictionary fills up and the writer
    encodes every page a second time, plainly (a tenth of silver's CPU).
    """
    cores = rows.sparkSession.sparkContext.defaultParallelism
    writer = rows.repartition(max(1, cores), "date").write.mode(mode).partitionBy("date")
    for field in rows.schema.fields:
        if isinstance(field.dataType, T.DoubleType | T.FloatType):
            writer = writer.option(f"parquet.enable.dictionary#{field.name}", "false")
    writer.parquet(path)


def rejected(validated: DataFrame, parsed: DataFrame | None = None) -> DataFrame:
    """Rows that broke a rule (soft ones included), with the rule and the raw record
    for the quarantine.

    Price validation drops the payload of rows no hard rule rejected (see
    :func:`validate_prices`); pass the ``parsed`` frame it validated so that an
    outlier's record gets its raw payload back, matched on the row's identity and the
    payload's hash.
    """
    bad = validated.where(F.col("rule").isNotNull())
    if parsed is not None and PAYLOAD_HASH in bad.columns:
        ident = ["source", "kind", "asset_id", "event_time", "ingest_time", PAYLOAD_HASH]
        missing = bad.where(F.col("payload").isNull()).select(*ident, "rule")
        raw = (parsed.withColumn(PAYLOAD_HASH, F.xxhash64("payload"))
               .select(*ident, F.col("payload").alias("_raw")))
        # The outliers are few: broadcast them and scan the batch once, where a
        # sort-merge join would shuffle the whole batch again. Replays of one row have
        # the same identity and payload, so one match each is enough.
        found = (raw.join(F.broadcast(missing), on=ident, how="inner")
                 .dropDuplicates([*ident, "rule"])
                 .withColumn("payload", F.col("_raw")).drop("_raw"))
        bad = bad.where(F.col("payload").isNotNull()).select(*found.columns).unionByName(found)
    return bad.select(
        "rule",
        F.to_json(F.struct("source", "kind", "asset_id", "event_time", "payload")).alias("record"),
    )


def within_hours(rows: DataFrame, hours: DataFrame) -> DataFrame:
    """Rows whose event hour is one of ``hours`` (a frame with an ``hour`` column)."""
    keyed = rows.withColumn("hour", F.date_trunc("hour", "event_time"))
    return keyed.join(hours, on="hour", how="left_semi").drop("hour")


def hourly_bars(silver: DataFrame) -> DataFrame:
    """OHLCV bars per asset and hour (see :func:`pipeline.aggregates.bars`)."""
    return aggregates.bars(silver, "1h")
