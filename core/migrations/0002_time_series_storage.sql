-- TimescaleDB hypertables when the extension can be loaded; otherwise plain
-- PostgreSQL with BRIN indexes on time, which stay tiny on append-mostly series.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
       AND current_setting('shared_preload_libraries') LIKE '%timescaledb%' THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        PERFORM create_hypertable('price_data', 'time', if_not_exists => TRUE, migrate_data => TRUE);
        PERFORM create_hypertable('onchain_metrics', 'time', if_not_exists => TRUE, migrate_data => TRUE);
        PERFORM create_hypertable('sentiment_scores', 'time', if_not_exists => TRUE, migrate_data => TRUE);
    ELSE
        CREATE INDEX IF NOT EXISTS price_data_time_brin ON price_data USING brin (time);
        CREATE INDEX IF NOT EXISTS onchain_metrics_time_brin ON onchain_metrics USING brin (time);
        CREATE INDEX IF NOT EXISTS sentiment_scores_time_brin ON sentiment_scores USING brin (time);
    END IF;
END
$$;
