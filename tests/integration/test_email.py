"""The email notifier (``core.notify.email``) against a real SMTP server (aiosmtpd):
what arrives, and which failures are permanent and which are worth a retry."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from pydantic import SecretStr

from core.errors import DeliveryError
from core.notify.email import send_email
from core.settings import SmtpSettings
from rwa.embedded import free_port
from tests.smtp import LocalSmtp

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> Iterator[LocalSmtp]:
    with LocalSmtp() as s:
        yield s


def body(message: EmailMessage) -> str:
    return message.get_content().replace("\r\n", "\n")  # SMTP carries CRLF line ends


def settings_for(server: LocalSmtp, **override: object) -> SmtpSettings:
    return SmtpSettings.model_validate({"host": server.host, "port": server.port,
                                        "starttls": False,
                                        "from_address": "RWA Prime <alerts@rwaprime.example>"}
                                       | override)


async def test_a_message_is_delivered(server: LocalSmtp) -> None:
    message_id = await send_email(settings_for(server), "ann@example.com",
                                  "PAXG above 2,500", "PAXG crossed 2,500 USD at 14:02 UTC.\n")
    (got,) = await server.inbox.wait_for("ann@example.com")
    assert got["Message-ID"] == message_id and message_id.endswith("@rwaprime.example>")
    assert got["From"] == "RWA Prime <alerts@rwaprime.example>"
    assert got["Subject"] == "PAXG above 2,500" and got["Date"]
    assert body(got) == "PAXG crossed 2,500 USD at 14:02 UTC.\n"


async def test_non_ascii_text_survives(server: LocalSmtp) -> None:
    await send_email(settings_for(server), "zoe@example.com", "Gold → 2 500 €",
                     "Kurs über Schwelle: 2 500 € ✓\n")
    (got,) = await server.inbox.wait_for("zoe@example.com")
    assert got["Subject"] == "Gold → 2 500 €"
    assert body(got) == "Kurs über Schwelle: 2 500 € ✓\n"


async def test_a_refused_recipient_is_permanent(server: LocalSmtp) -> None:
    server.inbox.refuse.add("gone@example.com")
    with pytest.raises(DeliveryError, match="recipient refused") as e:
        await send_email(settings_for(server), "gone@example.com", "s", "b")
    assert e.value.permanent is True
    assert server.inbox.to("gone@example.com") == []


async def test_an_unreachable_server_is_worth_a_retry() -> None:
    closed = SmtpSettings(host="127.0.0.1", port=free_port(), starttls=False, timeout_s=2)
    with pytest.raises(DeliveryError, match="unreachable") as e:
        await send_email(closed, "ann@example.com", "s", "b")
    assert e.value.permanent is False


async def test_not_configured_is_permanent() -> None:
    with pytest.raises(DeliveryError, match="RWA_SMTP__HOST") as e:
        await send_email(SmtpSettings(), "ann@example.com", "s", "b")
    assert e.value.permanent is True


async def test_header_injection_is_refused(server: LocalSmtp) -> None:
    with pytest.raises(DeliveryError, match="refused header") as e:
        await send_email(settings_for(server), "ann@example.com",
                         "hi\r\nBcc: everyone@example.com", "b")
    assert e.value.permanent is True
    assert server.inbox.to("everyone@example.com") == []


async def test_starttls_required_but_not_offered_is_permanent(server: LocalSmtp) -> None:
    with pytest.raises(DeliveryError, match="STARTTLS") as e:
        await send_email(settings_for(server, starttls=True), "ann@example.com", "s", "b")
    assert e.value.permanent is True


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_login() -> None:
    with LocalSmtp(credentials=("rwa", "s3cret-pass")) as server:
        good = settings_for(server, username="rwa", password=SecretStr("s3cret-pass"))
        await send_email(good, "ann@example.com", "with login", "b")
        assert [m["Subject"] for m in await server.inbox.wait_for("ann@example.com")] == [
            "with login"]

        bad = settings_for(server, username="rwa", password=SecretStr("wrong"))
        with pytest.raises(DeliveryError, match="login refused") as e:
            await send_email(bad, "ann@example.com", "s", "b")
        assert e.value.permanent is True and "wrong" not in str(e.value)

        anonymous = settings_for(server)
        with pytest.raises(DeliveryError) as e:
            await send_email(anonymous, "ann@example.com", "s", "b")
        assert e.value.permanent is True  # 530 authentication required
