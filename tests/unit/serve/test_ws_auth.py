import pytest

from serve.auth import service_accounts
from serve.auth.users import normalize_email
from serve.ws import _reason


def test_a_service_account_email_is_one_no_one_can_register_or_log_in_with() -> None:
    email = service_accounts.service_email(service_accounts.FIRST_TICK_PROBE)
    assert email == "first-tick-probe@localhost"
    with pytest.raises(ValueError, match="domain"):
        normalize_email(email)


async def test_only_known_tiers() -> None:
    with pytest.raises(ValueError, match="tier must be one of"):
        await service_accounts.ensure(None, "probe", tier="platinum")  # type: ignore[arg-type]


def test_close_reasons_fit_a_close_frame() -> None:
    assert _reason("short") == "short"
    long = "é" * 100  # 200 bytes of UTF-8
    cut = _reason(long)
    assert len(cut.encode()) <= 123 and long.startswith(cut)
