-- Gold time series check their asset references once per statement, not once per row.
--
-- A foreign key runs one lookup in assets for every inserted row: in the gold load
-- (COPY into staging, then one MERGE of up to a million rows) that per-row check cost as
-- much as the insert itself on a 2-core machine. Plain PostgreSQL (no TimescaleDB) gets
-- the same guarantee from statement-level triggers over transition tables instead:
--   * after an INSERT or UPDATE (MERGE included) on a gold series, the distinct asset ids
--     the statement wrote are locked in assets (FOR KEY SHARE, as a foreign key does, so a
--     concurrent delete waits) and any id assets lacks fails the statement with SQLSTATE
--     23503 (foreign_key_violation), exactly what the foreign key raised;
--   * after a DELETE or an UPDATE on assets, an asset id that disappeared while a gold
--     series still references it fails the statement the same way.
-- TimescaleDB hypertables allow no transition tables, so with TimescaleDB the foreign
-- keys stay as they are.

CREATE OR REPLACE FUNCTION gold_check_asset_refs() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    missing text;
BEGIN
    PERFORM 1 FROM assets a
     WHERE a.asset_id IN (SELECT DISTINCT n.asset_id FROM written n)
       FOR KEY SHARE;
    SELECT n.asset_id INTO missing
      FROM (SELECT DISTINCT asset_id FROM written) n
     WHERE NOT EXISTS (SELECT 1 FROM assets a WHERE a.asset_id = n.asset_id)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'insert or update on table "%" violates its asset reference', TG_TABLE_NAME
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = format('Key (asset_id)=(%s) is not present in table "assets".', missing),
                  TABLE = TG_TABLE_NAME;
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION gold_check_asset_removal() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    gone text;
    series text;
    referenced boolean;
BEGIN
    FOR gone IN
        SELECT DISTINCT o.asset_id FROM removed o
         WHERE NOT EXISTS (SELECT 1 FROM assets a WHERE a.asset_id = o.asset_id)
    LOOP
        FOREACH series IN ARRAY TG_ARGV LOOP
            EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE asset_id = $1)', series)
               INTO referenced USING gone;
            IF referenced THEN
                RAISE EXCEPTION 'update or delete on table "assets" violates the asset reference of table "%"', series
                    USING ERRCODE = 'foreign_key_violation',
                          DETAIL = format('Key (asset_id)=(%s) is still referenced from table "%s".', gone, series),
                          TABLE = 'assets';
            END IF;
        END LOOP;
    END LOOP;
    RETURN NULL;
END
$$;

DO $$
DECLARE
    series text;
    fk record;
    tables text[] := ARRAY['price_data', 'price_bars_1m', 'price_bars_1d', 'onchain_metrics',
                           'sentiment_scores'];
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        RETURN;
    END IF;
    FOREACH series IN ARRAY tables LOOP
        FOR fk IN
            SELECT conname FROM pg_constraint
             WHERE contype = 'f' AND conrelid = series::regclass
               AND confrelid = 'assets'::regclass
        LOOP
            EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', series, fk.conname);
        END LOOP;
        EXECUTE format('CREATE OR REPLACE TRIGGER %I AFTER INSERT ON %I REFERENCING NEW TABLE AS written '
                       'FOR EACH STATEMENT EXECUTE FUNCTION gold_check_asset_refs()',
                       series || '_asset_ref_insert', series);
        EXECUTE format('CREATE OR REPLACE TRIGGER %I AFTER UPDATE ON %I REFERENCING NEW TABLE AS written '
                       'FOR EACH STATEMENT EXECUTE FUNCTION gold_check_asset_refs()',
                       series || '_asset_ref_update', series);
    END LOOP;
    CREATE OR REPLACE TRIGGER assets_gold_refs_delete AFTER DELETE ON assets
        REFERENCING OLD TABLE AS removed FOR EACH STATEMENT
        EXECUTE FUNCTION gold_check_asset_removal('price_data', 'price_bars_1m', 'price_bars_1d',
                                                  'onchain_metrics', 'sentiment_scores');
    CREATE OR REPLACE TRIGGER assets_gold_refs_update AFTER UPDATE ON assets
        REFERENCING OLD TABLE AS removed FOR EACH STATEMENT
        EXECUTE FUNCTION gold_check_asset_removal('price_data', 'price_bars_1m', 'price_bars_1d',
                                                  'onchain_metrics', 'sentiment_scores');
END
$$;
