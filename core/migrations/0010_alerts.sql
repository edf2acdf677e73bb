-- Alerts with the seed's lifecycle, their arming (core/alerts.py: edge-triggered with a
-- cooldown), and alert_history as the record of every trigger and of every delivery
-- attempt's result (core/notify/dispatch.py).
--
-- One alert_history row per trigger. Its idempotency_key ('alert:<id>:<trigger_count>')
-- is unique, so a trigger is recorded once however often its insert is replayed, and
-- the row moves pending → sending → sent exactly once: a sender claims it with a
-- conditional UPDATE (only pending/retrying rows, or a 'sending' claim whose lease ran
-- out) and only the claim holder marks it sent. A row recorded as sent is never claimed
-- again, so no retry sends it twice.
ALTER TABLE alerts
    ADD COLUMN IF NOT EXISTS state text NOT NULL DEFAULT 'active',
    ADD COLUMN IF NOT EXISTS notification_target text,
    ADD COLUMN IF NOT EXISTS armed boolean NOT NULL DEFAULT true,
    ADD COLUMN IF NOT EXISTS risk_baseline double precision,
    ADD COLUMN IF NOT EXISTS trigger_count bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS last_triggered_at timestamptz,
    ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS deleted_at timestamptz;

-- Rows from before the lifecycle: inactive ones were paused.
UPDATE alerts SET state = 'paused' WHERE NOT is_active AND state = 'active';

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'alerts_state_check') THEN
        ALTER TABLE alerts ADD CONSTRAINT alerts_state_check
            CHECK (state IN ('draft', 'active', 'paused', 'modified', 'deleted'));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'alerts_is_active_state_check') THEN
        -- is_active (the seed's column) stays true exactly for the alerts the monitor runs.
        ALTER TABLE alerts ADD CONSTRAINT alerts_is_active_state_check
            CHECK (is_active = (state = 'active')) NOT VALID;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'alerts_method_check') THEN
        ALTER TABLE alerts ADD CONSTRAINT alerts_method_check
            CHECK (notification_method IN ('email', 'telegram', 'push')) NOT VALID;
    END IF;
END $$;

CREATE INDEX IF NOT EXISTS alerts_user_idx ON alerts (user_id) WHERE state <> 'deleted';

ALTER TABLE alert_history
    ADD COLUMN IF NOT EXISTS idempotency_key text,
    ADD COLUMN IF NOT EXISTS channel         text,
    ADD COLUMN IF NOT EXISTS target          text,
    ADD COLUMN IF NOT EXISTS message         text,
    ADD COLUMN IF NOT EXISTS attempts        integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS error           text,
    ADD COLUMN IF NOT EXISTS sent_at         timestamptz,
    ADD COLUMN IF NOT EXISTS next_attempt_at timestamptz,
    ADD COLUMN IF NOT EXISTS claimed_until   timestamptz,
    -- Every attempt's result: [{"attempt", "at", "status", "error", "retry_after_s"}, …]
    ADD COLUMN IF NOT EXISTS attempt_log     jsonb NOT NULL DEFAULT '[]'::jsonb;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'alert_history_status_check') THEN
        ALTER TABLE alert_history ADD CONSTRAINT alert_history_status_check
            CHECK (delivery_status IN ('pending', 'sending', 'retrying', 'sent', 'failed'));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'alert_history_sent_at_check') THEN
        ALTER TABLE alert_history ADD CONSTRAINT alert_history_sent_at_check
            CHECK ((delivery_status = 'sent') = (sent_at IS NOT NULL)) NOT VALID;
    END IF;
END $$;

CREATE UNIQUE INDEX IF NOT EXISTS alert_history_idempotency_key_idx
    ON alert_history (idempotency_key);
CREATE INDEX IF NOT EXISTS alert_history_alert_idx
    ON alert_history (alert_id, triggered_at DESC);
-- The sweep's retry queue: deliveries not finished, by when they are due.
CREATE INDEX IF NOT EXISTS alert_history_due_idx
    ON alert_history (next_attempt_at)
    WHERE delivery_status IN ('pending', 'sending', 'retrying');
