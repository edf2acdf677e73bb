"""Auth, tiers and SMTP in the Serve args and settings: secrets cross to the replica
but are never printed; tier overrides from the environment keep the other figures."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr, ValidationError

from core.errors import ConfigError
from core.settings import AuthSettings, Settings, TierLimits
from rwa.stack import local_jwt_secret
from serve.args import AppArgs

ROOT = Path(__file__).resolve().parents[3]
SECRET = "s" * 48


def test_secrets_survive_the_trip_to_the_replica_but_never_print() -> None:
    args = AppArgs(database_url="postgresql://x", redis_url="redis://x",
                   auth={"jwt_secret": SECRET, "totp_key": "t" * 40},
                   smtp={"host": "mail", "password": "pw-123"})
    shipped = args.model_dump(mode="json")  # what build_app binds to the deployment
    again = AppArgs.model_validate(shipped)
    assert again.auth.jwt_secret.get_secret_value() == SECRET
    assert again.auth.totp_key.get_secret_value() == "t" * 40
    assert "t" * 40 not in repr(args)
    assert again.smtp.password.get_secret_value() == "pw-123"
    assert SECRET not in repr(args) and "pw-123" not in repr(args)
    assert SECRET not in str(args.model_dump())  # python mode keeps SecretStr


def test_defaults_leave_the_secret_to_the_environment() -> None:
    args = AppArgs(database_url="postgresql://x", redis_url="redis://x")
    assert args.auth.jwt_secret is None and args.smtp is None
    assert set(args.tiers) == {"free", "pro", "enterprise"}
    assert args.model_dump(mode="json")["auth"]["jwt_secret"] is None


def test_tiers_must_include_free() -> None:
    with pytest.raises(ValidationError, match="must include 'free'"):
        AppArgs(database_url="x", redis_url="y", tiers={"pro": TierLimits(
            requests_per_minute=1, forecast_horizons=[1], max_alerts=0,
            max_ws_subscriptions=0)})


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ConfigError, match="at least 32 characters"):
        AuthSettings(jwt_secret=SecretStr("change-me"))


def test_a_tier_figure_from_the_environment_keeps_the_others(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RWA_TIERS__FREE__REQUESTS_PER_MINUTE", "30")
    monkeypatch.setenv("RWA_AUTH__JWT_SECRET", SECRET)
    monkeypatch.setenv("RWA_SMTP__HOST", "smtp.example.com")
    s = Settings()
    table = s.tiers.table()
    assert table["free"].requests_per_minute == 30
    assert table["free"].forecast_horizons == [1, 7] and table["free"].max_alerts == 3
    assert table["pro"].requests_per_minute == 600
    assert s.auth.jwt_secret.get_secret_value() == SECRET and s.auth.access_ttl_s == 900
    assert s.smtp.configured and s.smtp.port == 587
    AppArgs(database_url="x", redis_url="y", auth=s.auth, tiers=table, smtp=s.smtp)


@pytest.mark.parametrize("path", ["serve/serve_config.yaml", "kuberay/rayservice.yaml"])
def test_manifests_hold_no_secrets(path: str) -> None:
    doc = yaml.safe_load((ROOT / path).read_text())
    if doc.get("kind") == "RayService":
        doc = yaml.safe_load(doc["spec"]["serveConfigV2"])
    args = AppArgs.model_validate(doc["applications"][0]["args"])
    assert args.auth.jwt_secret is None and args.smtp is not None
    assert args.smtp.password is None


def test_the_embedded_stack_keeps_one_private_secret(tmp_path: Path) -> None:
    first = local_jwt_secret(tmp_path)
    assert len(first.get_secret_value()) >= 32
    assert local_jwt_secret(tmp_path).get_secret_value() == first.get_secret_value()
    mode = os.stat(tmp_path / "auth" / "jwt_secret").st_mode
    assert stat.S_IMODE(mode) == 0o600
    AuthSettings(jwt_secret=first)  # long enough for the settings' own check


def test_the_embedded_stack_keeps_a_totp_key_apart_from_the_jwt_secret(tmp_path: Path) -> None:
    from rwa.stack import local_secret

    key = local_secret(tmp_path, "totp_key")
    assert key.get_secret_value() != local_jwt_secret(tmp_path).get_secret_value()
    assert local_secret(tmp_path, "totp_key").get_secret_value() == key.get_secret_value()
    assert stat.S_IMODE(os.stat(tmp_path / "auth" / "totp_key").st_mode) == 0o600
    AuthSettings(totp_key=key)  # long enough for the settings' own check


def test_a_short_totp_key_is_refused() -> None:
    with pytest.raises((ConfigError, ValueError), match="RWA_AUTH__TOTP_KEY"):
        AuthSettings(totp_key=SecretStr("short"))

