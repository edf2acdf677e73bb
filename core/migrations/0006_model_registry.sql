-- The model registry (training/registry.py): every registered model version, where its
-- artifact lives in the lake, the metrics it was chosen on and its hyperparameters.
--
-- A version is served once it is promoted. promoted_at is NULL for every other version,
-- and the partial unique index lets at most one version per kind be promoted, so a
-- promotion that forgot to demote the previous one fails instead of leaving two.
-- Plain tables only: the same with or without TimescaleDB.
CREATE TABLE IF NOT EXISTS model_versions (
    version      text PRIMARY KEY,
    kind         text NOT NULL,
    artifact_uri text NOT NULL,
    metrics      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metrics) = 'object'),
    params       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(params) = 'object'),
    created_at   timestamptz NOT NULL DEFAULT now(),
    promoted_at  timestamptz
);

CREATE UNIQUE INDEX IF NOT EXISTS model_versions_one_promoted_idx
    ON model_versions (kind) WHERE promoted_at IS NOT NULL;

-- Listings are per kind, newest first.
CREATE INDEX IF NOT EXISTS model_versions_kind_created_idx
    ON model_versions (kind, created_at DESC);
