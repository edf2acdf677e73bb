import re

from core.db import migrations


def test_migrations_are_numbered_in_order_and_cover_the_data_model() -> None:
    found = migrations()
    versions = [m.version for m in found]
    assert versions == sorted(versions) == list(range(1, len(found) + 1))
    sql = "\n".join(m.sql for m in found)
    tables = set(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", sql))
    assert {"users", "assets", "portfolios", "predictions", "risk_scores", "alerts",
            "alert_history", "price_data", "onchain_metrics", "sentiment_scores"} <= tables
    assert "create_hypertable" in sql and "USING brin" in sql
