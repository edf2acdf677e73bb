-- The whole data model of DESIGN.md: relational tables, time series, and the
-- bookkeeping tables of the pipeline and the ingestion actors.

CREATE TABLE IF NOT EXISTS assets (
    asset_id                 text PRIMARY KEY,
    symbol                   text NOT NULL UNIQUE,
    name                     text NOT NULL,
    issuer                   text NOT NULL,
    asset_class              text NOT NULL,
    blockchain_network       text NOT NULL,
    chains                   text[] NOT NULL DEFAULT '{}',
    contract_address         text,
    reference_price          double precision,
    apy                      double precision,
    description              text NOT NULL DEFAULT '',
    underlying_asset_details jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS assets_class_idx ON assets (asset_class);

CREATE TABLE IF NOT EXISTS users (
    user_id       bigserial PRIMARY KEY,
    email         text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    tier          text NOT NULL DEFAULT 'free',
    totp_secret   text,
    is_admin      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS portfolios (
    portfolio_id       bigserial PRIMARY KEY,
    user_id            bigint NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    asset_id           text NOT NULL REFERENCES assets (asset_id),
    quantity           numeric NOT NULL CHECK (quantity >= 0),
    avg_purchase_price numeric CHECK (avg_purchase_price >= 0),
    wallet_address     text,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS portfolios_user_idx ON portfolios (user_id);

CREATE TABLE IF NOT EXISTS predictions (
    prediction_id    bigserial PRIMARY KEY,
    asset_id         text NOT NULL REFERENCES assets (asset_id),
    forecast_horizon integer NOT NULL CHECK (forecast_horizon > 0),
    predicted_price  double precision NOT NULL,
    confidence_lower double precision NOT NULL,
    confidence_upper double precision NOT NULL,
    generated_at     timestamptz NOT NULL DEFAULT now(),
    model_version    text NOT NULL,
    -- confidence_lower/upper are the 80 % interval; the 95 % one sits beside it.
    lower_95         double precision,
    upper_95         double precision,
    target_time      timestamptz
);
CREATE INDEX IF NOT EXISTS predictions_latest_idx
    ON predictions (asset_id, forecast_horizon, generated_at DESC);

CREATE TABLE IF NOT EXISTS risk_scores (
    score_id         bigserial PRIMARY KEY,
    asset_id         text NOT NULL REFERENCES assets (asset_id),
    composite_score  double precision NOT NULL,
    market_risk      double precision,
    credit_risk      double precision,
    regulatory_risk  double precision,
    technical_risk   double precision,
    calculated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS risk_scores_latest_idx ON risk_scores (asset_id, calculated_at DESC);

CREATE TABLE IF NOT EXISTS alerts (
    alert_id            bigserial PRIMARY KEY,
    user_id             bigint NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    asset_id            text NOT NULL REFERENCES assets (asset_id),
    condition_type      text NOT NULL,
    condition_value     jsonb NOT NULL,
    notification_method text NOT NULL,
    is_active           boolean NOT NULL DEFAULT true,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS alerts_asset_idx ON alerts (asset_id) WHERE is_active;

CREATE TABLE IF NOT EXISTS alert_history (
    history_id      bigserial PRIMARY KEY,
    alert_id        bigint NOT NULL REFERENCES alerts (alert_id) ON DELETE CASCADE,
    triggered_at    timestamptz NOT NULL DEFAULT now(),
    trigger_value   jsonb,
    delivery_status text NOT NULL DEFAULT 'pending'
);

-- Time series. Primary keys lead with asset_id for per-asset range scans and include
-- time so they stay valid TimescaleDB hypertable keys.
CREATE TABLE IF NOT EXISTS price_data (
    time     timestamptz NOT NULL,
    asset_id text NOT NULL REFERENCES assets (asset_id),
    open     double precision NOT NULL,
    high     double precision NOT NULL,
    low      double precision NOT NULL,
    close    double precision NOT NULL,
    volume   double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (asset_id, time)
);

CREATE TABLE IF NOT EXISTS onchain_metrics (
    time             timestamptz NOT NULL,
    asset_id         text NOT NULL REFERENCES assets (asset_id),
    holder_count     bigint,
    transfer_volume  double precision,
    dex_liquidity    double precision,
    exchange_inflow  double precision,
    exchange_outflow double precision,
    PRIMARY KEY (asset_id, time)
);

CREATE TABLE IF NOT EXISTS sentiment_scores (
    time            timestamptz NOT NULL,
    asset_id        text NOT NULL REFERENCES assets (asset_id),
    sentiment_score double precision NOT NULL,
    article_count   integer NOT NULL DEFAULT 0,
    source          text NOT NULL,
    PRIMARY KEY (asset_id, time, source)
);

-- Pipeline bookkeeping.
CREATE TABLE IF NOT EXISTS quarantine (
    quarantine_id bigserial PRIMARY KEY,
    stage         text NOT NULL,
    rule          text NOT NULL,
    record        text NOT NULL,
    detected_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS quarantine_rule_idx ON quarantine (stage, rule);

CREATE TABLE IF NOT EXISTS lake_manifest (
    stage        text NOT NULL,
    path         text NOT NULL,
    row_count    bigint NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stage, path)
);

CREATE TABLE IF NOT EXISTS ingest_cursors (
    source     text PRIMARY KEY,
    cursor     jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
