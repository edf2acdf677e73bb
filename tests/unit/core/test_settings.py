from pathlib import Path

import pytest

from core.errors import ConfigError
from core.settings import Settings


def test_prefixed_and_nested_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RWA_HOME", str(tmp_path))
    monkeypatch.setenv("RWA_API__PORT", "8123")
    monkeypatch.setenv("RWA_PREDICTIONS__HORIZONS", "[1, 14]")
    s = Settings()
    assert s.home == tmp_path
    assert s.api.port == 8123
    assert s.predictions.horizons == [1, 14]
    assert s.lake_root == str(tmp_path / "lake")


def test_conventional_urls_switch_to_external_services(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:pg-pass-4711@db/rwa")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    s = Settings()
    assert s.database_url is not None and s.database_url.get_secret_value().endswith("/rwa")
    assert "pg-pass-4711" not in repr(s)  # the value; field names may say "secret"
    assert s.kafka_bootstrap_servers == "kafka:9092"
    assert s.redis_url is None


def test_cluster_mode_requires_external_services(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RWA_MODE", "cluster")
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/rwa")
    with pytest.raises(ConfigError, match="REDIS_URL, KAFKA_BOOTSTRAP_SERVERS"):
        Settings()


def test_keyless_sources_on_and_providers_off_by_default() -> None:
    from actors.sources import enabled_sources

    s = Settings()
    assert enabled_sources(s) == ["simulated-onchain", "simulated-news", "us-macro"]
    assert not any(p.enabled for p in s.sources.providers.values())


def test_enabled_provider_without_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RWA_SOURCES__BITQUERY__ENABLED", "true")
    with pytest.raises(ConfigError, match="RWA_SOURCES__BITQUERY__API_KEY"):
        Settings()
    monkeypatch.setenv("RWA_SOURCES__BITQUERY__API_KEY", "bq-secret-token")
    s = Settings()
    assert "bq-secret-token" not in repr(s)
    from actors.sources import enabled_sources

    assert "bitquery" in enabled_sources(s)
