-- The forecasting ensemble (training/ensemble.py): what is forecast, the path up to the
-- horizon, the components' weights, and the accuracy record served beside each prediction.
--
-- NAV-pinned assets are forecast three ways: the market price, the NAV (its accrual)
-- and the premium of price over NAV. `target` says which a row is; predicted_price
-- keeps the seed's name and holds that target's value.
ALTER TABLE predictions
    ADD COLUMN IF NOT EXISTS target text NOT NULL DEFAULT 'price'
        CHECK (target IN ('price', 'nav', 'premium')),
    ADD COLUMN IF NOT EXISTS path    jsonb,
    ADD COLUMN IF NOT EXISTS weights jsonb;
CREATE INDEX IF NOT EXISTS predictions_target_latest_idx
    ON predictions (asset_id, target, forecast_horizon, generated_at DESC);

-- One `rwa backtest` run. `source` is where the series came from: gold (catalog
-- assets), simulated (the simulator's paths) or macro (statsmodels' US macro data).
CREATE TABLE IF NOT EXISTS backtest_runs (
    run_id        bigserial PRIMARY KEY,
    source        text NOT NULL,
    model_version text NOT NULL,
    horizons      integer[] NOT NULL,
    params        jsonb NOT NULL DEFAULT '{}',
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);

-- Scores per series, target, model (the ensemble, each component, naive) and horizon.
-- series_id is an asset id for gold runs and a dataset name otherwise, so it carries
-- no foreign key.
CREATE TABLE IF NOT EXISTS backtest_scores (
    run_id      bigint NOT NULL REFERENCES backtest_runs (run_id) ON DELETE CASCADE,
    series_id   text NOT NULL,
    target      text NOT NULL DEFAULT 'price',
    model       text NOT NULL,
    horizon     integer NOT NULL CHECK (horizon > 0),
    mase        double precision NOT NULL,
    smape       double precision NOT NULL,
    coverage_80 double precision,
    coverage_95 double precision,
    n           integer NOT NULL CHECK (n > 0),
    PRIMARY KEY (run_id, series_id, target, model, horizon)
);
CREATE INDEX IF NOT EXISTS backtest_scores_series_idx
    ON backtest_scores (series_id, target, horizon, run_id DESC);

-- The ensemble weights and conformal quantiles per asset and target that the hourly
-- job forecasts with, refreshed by backtests and by the job itself when stale.
CREATE TABLE IF NOT EXISTS forecast_calibrations (
    asset_id      text NOT NULL REFERENCES assets (asset_id) ON DELETE CASCADE,
    target        text NOT NULL,
    model_version text NOT NULL,
    calibration   jsonb NOT NULL,
    computed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (asset_id, target)
);
