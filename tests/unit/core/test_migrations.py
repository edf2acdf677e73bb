import re

from core.db import migrations


def test_migrations_are_numbered_in_order_and_cover_the_data_model() -> None:
    found = migrations()
    versions = [m.version for m in found]
    assert versions == sorted(versions) == list(range(1, len(found) + 1))
    sql = "\n".join(m.sql for m in found)
    tables = set(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", sql))
    assert {"users", "assets", "portfolios", "predictions", "risk_scores", "alerts",
            "alert_history", "price_data", "onchain_metrics", "sentiment_scores",
            "price_bars_1m", "price_bars_1d", "macro_series"} <= tables
    assert "create_hypertable" in sql and "USING brin" in sql
    assert "add_compression_policy" in sql and "timescaledb.continuous" in sql


def test_continuous_aggregates_are_created_without_data() -> None:
    # The runner applies each file inside a transaction; a continuous aggregate that
    # materialises on creation refuses to run there, one created WITH NO DATA does not.
    for m in migrations():
        for statement in re.findall(r"CREATE MATERIALIZED VIEW[^;]*;", m.sql):
            if "timescaledb.continuous" in statement:
                assert statement.rstrip(";").rstrip().endswith("WITH NO DATA"), m.name
