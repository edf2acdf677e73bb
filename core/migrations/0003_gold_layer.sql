-- The gold layer: bars at every interval the pipeline produces, macro series, the
-- envelope's extra on-chain metrics, and an idempotent quarantine.
--
-- Gold loads are COPY into a staging table, then INSERT … ON CONFLICT (key) DO UPDATE,
-- so every gold table needs a primary key on its natural key:
--   price_bars_1m, price_data (1 h, the table the API reads), price_bars_1d: (asset_id, time)
--   onchain_metrics: (asset_id, time), one row per asset and day; ``chain`` is an attribute
--                    (the asset's primary chain), not part of the key
--   sentiment_scores: (asset_id, time, source)          (both from 0001)
--   macro_series: (series, time)
--   quarantine: unique (stage, rule, md5(record)), so a re-run batch adds nothing

CREATE TABLE IF NOT EXISTS price_bars_1m (
    time     timestamptz NOT NULL,
    asset_id text NOT NULL REFERENCES assets (asset_id),
    open     double precision NOT NULL,
    high     double precision NOT NULL,
    low      double precision NOT NULL,
    close    double precision NOT NULL,
    volume   double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (asset_id, time)
);

CREATE TABLE IF NOT EXISTS price_bars_1d (
    time     timestamptz NOT NULL,
    asset_id text NOT NULL REFERENCES assets (asset_id),
    open     double precision NOT NULL,
    high     double precision NOT NULL,
    low      double precision NOT NULL,
    close    double precision NOT NULL,
    volume   double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (asset_id, time)
);

-- Macro series are not tied to an asset (a policy rate, CPI, a bond yield).
CREATE TABLE IF NOT EXISTS macro_series (
    time      timestamptz NOT NULL,
    series    text NOT NULL,
    value     double precision NOT NULL,
    unit      text,
    country   text,
    frequency text,
    source    text NOT NULL,
    PRIMARY KEY (series, time)
);

-- The on-chain envelope carries more than the seed's columns; any subset may be known.
ALTER TABLE onchain_metrics
    ADD COLUMN IF NOT EXISTS transfer_count bigint,
    ADD COLUMN IF NOT EXISTS nav            double precision,
    ADD COLUMN IF NOT EXISTS apy            double precision,
    ADD COLUMN IF NOT EXISTS tvl_usd        double precision,
    ADD COLUMN IF NOT EXISTS chain          text;

-- Hourly article counts reach gold before a model scores the hour, so the score may be
-- null for a while; the loader keeps a stored score when a recount brings none.
ALTER TABLE sentiment_scores ALTER COLUMN sentiment_score DROP NOT NULL;

-- Quarantine: one row per (stage, rule, record). Records can be long, so the unique
-- index holds their md5, not the text. Duplicates written before this migration are
-- dropped first (the oldest row of each stays) or the index could not be built.
DELETE FROM quarantine q
USING quarantine older
WHERE q.stage = older.stage AND q.rule = older.rule
  AND md5(q.record) = md5(older.record)
  AND q.quarantine_id > older.quarantine_id;
CREATE UNIQUE INDEX IF NOT EXISTS quarantine_record_uidx
    ON quarantine (stage, rule, md5(record));

-- Storage of the new series. The TimescaleDB branch runs where 0002 created the
-- extension; plain PostgreSQL (pgserver, RDS) takes the ELSE branch.
--
-- With TimescaleDB:
--   * hypertables for price_bars_1m (1-day chunks), price_bars_1d and macro_series
--     (1-year chunks: a few hundred rows per asset or series a year);
--   * compression of price_bars_1m and price_data chunks older than 7 days, segmented
--     by asset_id so a per-asset range read decompresses one segment. Late bars still
--     upsert into compressed chunks (TimescaleDB >= 2.11), only slower, and the
--     pipeline recomputes recent hours, well inside the 7 days;
--   * continuous aggregates where a coarser bar is a pure roll-up that readers ask for:
--       price_data_daily  - daily bars from the hourly price_data; the API's interval=1d
--                           computes exactly this roll-up on every request;
--       price_bars_weekly - weekly bars (Monday-based) from price_bars_1d.
--     Both are real-time (materialized_only = false: rows newer than the last refresh
--     are aggregated on read) and created WITH NO DATA, because a continuous aggregate
--     that materialises on creation cannot run inside the migration's transaction; a
--     refresh policy fills them. No aggregate derives hourly bars from 1 m bars: the
--     pipeline writes hourly bars from silver (ticks and bars alike), and a second,
--     differently-sourced hourly series would disagree with price_data.
-- Without it: BRIN indexes on time (tiny on append-mostly series) and plain views with
-- the same names and columns as the continuous aggregates, so readers need not care.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('price_bars_1m', 'time', chunk_time_interval => INTERVAL '1 day',
                                  if_not_exists => TRUE, migrate_data => TRUE);
        PERFORM create_hypertable('price_bars_1d', 'time', chunk_time_interval => INTERVAL '1 year',
                                  if_not_exists => TRUE, migrate_data => TRUE);
        PERFORM create_hypertable('macro_series', 'time', chunk_time_interval => INTERVAL '1 year',
                                  if_not_exists => TRUE, migrate_data => TRUE);

        ALTER TABLE price_bars_1m SET (timescaledb.compress,
                                       timescaledb.compress_segmentby = 'asset_id',
                                       timescaledb.compress_orderby = 'time DESC');
        ALTER TABLE price_data SET (timescaledb.compress,
                                    timescaledb.compress_segmentby = 'asset_id',
                                    timescaledb.compress_orderby = 'time DESC');
        PERFORM add_compression_policy('price_bars_1m', INTERVAL '7 days', if_not_exists => TRUE);
        PERFORM add_compression_policy('price_data', INTERVAL '7 days', if_not_exists => TRUE);

        CREATE MATERIALIZED VIEW IF NOT EXISTS price_data_daily
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT time_bucket(INTERVAL '1 day', time) AS time,
                   asset_id,
                   first(open, time) AS open,
                   max(high) AS high,
                   min(low) AS low,
                   last(close, time) AS close,
                   sum(volume) AS volume
            FROM price_data
            GROUP BY time_bucket(INTERVAL '1 day', time), asset_id
            WITH NO DATA;
        -- A refresh window must span at least two buckets.
        PERFORM add_continuous_aggregate_policy('price_data_daily',
            start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
            schedule_interval => INTERVAL '30 minutes', if_not_exists => TRUE);

        CREATE MATERIALIZED VIEW IF NOT EXISTS price_bars_weekly
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT time_bucket(INTERVAL '1 week', time) AS time,
                   asset_id,
                   first(open, time) AS open,
                   max(high) AS high,
                   min(low) AS low,
                   last(close, time) AS close,
                   sum(volume) AS volume
            FROM price_bars_1d
            GROUP BY time_bucket(INTERVAL '1 week', time), asset_id
            WITH NO DATA;
        PERFORM add_continuous_aggregate_policy('price_bars_weekly',
            start_offset => INTERVAL '4 weeks', end_offset => INTERVAL '1 day',
            schedule_interval => INTERVAL '6 hours', if_not_exists => TRUE);
    ELSE
        CREATE INDEX IF NOT EXISTS price_bars_1m_time_brin ON price_bars_1m USING brin (time);
        CREATE INDEX IF NOT EXISTS price_bars_1d_time_brin ON price_bars_1d USING brin (time);
        CREATE INDEX IF NOT EXISTS macro_series_time_brin ON macro_series USING brin (time);

        -- UTC buckets, as time_bucket makes them; 'week' starts on Monday in both.
        CREATE OR REPLACE VIEW price_data_daily AS
            SELECT date_trunc('day', time, 'UTC') AS time,
                   asset_id,
                   (array_agg(open ORDER BY time))[1] AS open,
                   max(high) AS high,
                   min(low) AS low,
                   (array_agg(close ORDER BY time DESC))[1] AS close,
                   sum(volume) AS volume
            FROM price_data
            GROUP BY date_trunc('day', time, 'UTC'), asset_id;
        CREATE OR REPLACE VIEW price_bars_weekly AS
            SELECT date_trunc('week', time, 'UTC') AS time,
                   asset_id,
                   (array_agg(open ORDER BY time))[1] AS open,
                   max(high) AS high,
                   min(low) AS low,
                   (array_agg(close ORDER BY time DESC))[1] AS close,
                   sum(volume) AS volume
            FROM price_bars_1d
            GROUP BY date_trunc('week', time, 'UTC'), asset_id;
    END IF;
END
$$;
