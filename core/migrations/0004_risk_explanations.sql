-- Risk scores explain themselves: each row keeps, beside the seed's columns, the
-- factor-by-factor explanation it was computed from and the methodology version
-- (docs/risk-methodology.md). Rows are appended per run, so the table is the history;
-- an asset's latest score is its row with the greatest calculated_at
-- (risk_scores_latest_idx from 0001 serves that read).
ALTER TABLE risk_scores
    ADD COLUMN IF NOT EXISTS explanation         jsonb,
    ADD COLUMN IF NOT EXISTS methodology_version text;
