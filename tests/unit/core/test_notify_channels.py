"""The Telegram and webhook notifiers against local servers speaking their formats."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from pydantic import SecretStr

from core.errors import ConfigError, DeliveryError, DeliveryRateLimited
from core.notify.push import send_push, verify
from core.notify.telegram import send_telegram
from core.settings import AlertSettings, PushSettings, TelegramSettings
from rwa.embedded import free_port
from tests.fakes import telegram as tg
from tests.fakes.server import HTML_ERROR_PAGE, FakeProvider, Response


@pytest.fixture
def telegram():
    fake = tg.TelegramFake()
    with FakeProvider(fake) as server:
        server.fake = fake
        yield server


def _tg(server: FakeProvider, token: str = tg.TOKEN) -> TelegramSettings:
    return TelegramSettings(bot_token=SecretStr(token), base_url=server.url, timeout_s=2)


async def test_telegram_sends_through_the_bot_api(telegram: FakeProvider) -> None:
    message_id = await send_telegram(_tg(telegram), "424242", "PAXG is above 3000")
    assert message_id == 1
    [request] = telegram.requests
    assert request.method == "POST" and request.path == f"/bot{tg.TOKEN}/sendMessage"
    assert request.json() == {"chat_id": "424242", "text": "PAXG is above 3000"}
    assert telegram.fake.delivered[0]["text"] == "PAXG is above 3000"


async def test_telegram_429_carries_retry_after(telegram: FakeProvider) -> None:
    telegram.fail_next(429, tg.too_many_requests(7))
    with pytest.raises(DeliveryRateLimited) as err:
        await send_telegram(_tg(telegram), "424242", "x")
    assert err.value.retry_after_s == 7 and not err.value.permanent
    assert telegram.fake.delivered == []


@pytest.mark.parametrize(("status", "body", "permanent", "message"), [
    (500, tg.server_error(), False, "telegram 500: Internal Server Error"),
    (502, HTML_ERROR_PAGE, False, "telegram 502"),
    (400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
     True, "chat not found"),
    (403, {"ok": False, "error_code": 403,
           "description": "Forbidden: bot was blocked by the user"}, True, "blocked"),
])
async def test_telegram_errors_say_whether_to_retry(
        telegram: FakeProvider, status: int, body: object, permanent: bool,
        message: str) -> None:
    telegram.fail_next(status, body)
    with pytest.raises(DeliveryError) as err:
        await send_telegram(_tg(telegram), "424242", "x")
    assert err.value.permanent is permanent and message in str(err.value)
    assert not isinstance(err.value, DeliveryRateLimited)


async def test_telegram_wrong_token_unknown_chat_and_no_server(
        telegram: FakeProvider) -> None:
    with pytest.raises(DeliveryError) as err:
        await send_telegram(_tg(telegram, "999:wrong"), "424242", "x")
    assert err.value.permanent and "401" in str(err.value)
    assert "999:wrong" not in str(err.value)  # the token never shows in errors
    with pytest.raises(DeliveryError, match="chat not found"):
        await send_telegram(_tg(telegram), "1", "x")
    with pytest.raises(DeliveryError) as err:
        await send_telegram(TelegramSettings(bot_token=SecretStr(tg.TOKEN),
                                             base_url=f"http://127.0.0.1:{free_port()}"),
                            "424242", "x")
    assert not err.value.permanent and tg.TOKEN not in str(err.value)
    with pytest.raises(DeliveryError, match="RWA_TELEGRAM__BOT_TOKEN") as err:
        await send_telegram(TelegramSettings(), "424242", "x")
    assert err.value.permanent


SECRET = "whsec-test-0123456789abcdef"


@pytest.fixture
def receiver():
    with FakeProvider(lambda r: Response(204)) as server:
        yield server


async def test_push_posts_signed_json(receiver: FakeProvider) -> None:
    settings = PushSettings(signing_secret=SecretStr(SECRET), timeout_s=2,
                            allow_private_targets=True)
    status = await send_push(settings, f"{receiver.url}/hook", {"alert_id": 7, "price": 1.5},
                             idempotency_key="alert:7:1")
    assert status == 204
    [r] = receiver.requests
    assert r.path == "/hook" and r.json() == {"alert_id": 7, "price": 1.5}
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-rwa-idempotency-key"] == "alert:7:1"
    ts = r.headers["x-rwa-timestamp"]
    expected = hmac.new(SECRET.encode(), f"{ts}.".encode() + r.body, hashlib.sha256).hexdigest()
    assert r.headers["x-rwa-signature"] == f"sha256={expected}"
    assert verify(SECRET, ts, r.body, r.headers["x-rwa-signature"])
    assert not verify("other-secret", ts, r.body, r.headers["x-rwa-signature"])
    assert not verify(SECRET, ts, r.body + b" ", r.headers["x-rwa-signature"])
    assert not verify(SECRET, ts, r.body, r.headers["x-rwa-signature"], now=float(ts) + 3600)


async def test_push_failures_say_whether_to_retry(receiver: FakeProvider) -> None:
    settings = PushSettings(signing_secret=SecretStr(SECRET), timeout_s=2,
                            allow_private_targets=True)
    url = f"{receiver.url}/hook"
    receiver.fail_next(429, b"", headers={"Retry-After": "3"})
    with pytest.raises(DeliveryRateLimited) as err:
        await send_push(settings, url, {}, idempotency_key="k")
    assert err.value.retry_after_s == 3
    for status, permanent in [(500, False), (503, False), (408, False), (404, True),
                              (410, True), (301, True)]:
        receiver.fail_next(status, b"no")
        with pytest.raises(DeliveryError) as err:
            await send_push(settings, url, {}, idempotency_key="k")
        assert err.value.permanent is permanent, status
    with pytest.raises(DeliveryError, match="RWA_PUSH__SIGNING_SECRET"):
        await send_push(PushSettings(), url, {}, idempotency_key="k")
    with pytest.raises(ConfigError, match="at least 16 characters"):
        PushSettings(signing_secret=SecretStr("too-short"))


def test_backoff_doubles_up_to_its_ceiling() -> None:
    from core.notify.dispatch import Dispatcher

    d = Dispatcher(alerts=AlertSettings(retry_base_s=2, retry_max_s=10))
    assert [d.backoff_s(n) for n in (1, 2, 3, 4, 5)] == [2, 4, 8, 10, 10]


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.1.2.3/hook",
    "http://192.168.0.7/hook", "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:9000/hook", "http://100.64.0.1/hook", "http://0.0.0.0/hook",
])
async def test_push_refuses_non_public_addresses(receiver: FakeProvider, url: str) -> None:
    """A user's webhook URL must not reach the platform's own network (loopback, private
    ranges, cloud metadata); refused for good, before anything is sent."""
    settings = PushSettings(signing_secret=SecretStr(SECRET), timeout_s=2)
    with pytest.raises(DeliveryError, match="non-public address") as err:
        await send_push(settings, url, {"alert_id": 1}, idempotency_key="k")
    assert err.value.permanent
    assert receiver.requests == []


async def test_push_to_a_public_address_passes_the_check() -> None:
    from core.notify.push import check_public

    await check_public("https://93.184.215.14/hook")  # a public literal: no DNS needed
    with pytest.raises(DeliveryError, match="does not resolve") as err:
        await check_public("https://no-such-host.invalid/hook")
    assert not err.value.permanent
