"""Email through an SMTP server (``SmtpSettings``), for account mail and alert emails.

One call, :func:`send_email`, sends one plain-text message and returns its Message-ID,
or raises :class:`core.errors.DeliveryError` whose ``permanent`` flag tells a caller
that retries (the alert monitor's, say) whether trying again can help::

    from core.notify.email import send_email

    message_id = await send_email(settings.smtp, "ann@example.com", "Subject", "Body")

The stdlib ``smtplib`` runs in a worker thread, so the event loop never waits on the
server. STARTTLS is used when ``smtp.starttls`` is on (the default) and login when
``smtp.username`` is set. Nothing secret is logged: neither the password nor the body.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr

from core.errors import DeliveryError
from core.settings import SmtpSettings

log = logging.getLogger(__name__)


async def send_email(smtp: SmtpSettings, to: str, subject: str, body: str) -> str:
    """Send a plain-text email to one address; return its Message-ID.

    Args:
        smtp: The server and sender; ``smtp.host`` unset means email is not configured.
        to: The recipient's address.
        subject: One line; line breaks are refused.
        body: The text of the message.

    Raises:
        DeliveryError: The message was not accepted by the server.
    """
    if not smtp.configured:
        raise DeliveryError("email is not configured: set RWA_SMTP__HOST", permanent=True)
    message = compose(smtp, to, subject, body)
    await asyncio.to_thread(_deliver, smtp, message)
    log.info("email %s delivered to the SMTP server for %s", message["Message-ID"], to)
    return str(message["Message-ID"])


def compose(smtp: SmtpSettings, to: str, subject: str, body: str) -> EmailMessage:
    """The message :func:`send_email` sends (headers checked for injection)."""
    message = EmailMessage()
    try:
        message["From"] = smtp.from_address
        message["To"] = to
        message["Subject"] = subject
    except ValueError as e:  # a CR or LF in a header value
        raise DeliveryError(f"refused header: {e}", permanent=True) from e
    domain = parseaddr(smtp.from_address)[1].rpartition("@")[2] or None
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(body)
    return message


def _deliver(smtp: SmtpSettings, message: EmailMessage) -> None:
    assert smtp.host is not None
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s) as client:
            client.ehlo()
            if smtp.starttls:
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if smtp.username:
                password = smtp.password.get_secret_value() if smtp.password else ""
                client.login(smtp.username, password)
            client.send_message(message)
    except smtplib.SMTPAuthenticationError as e:
        raise DeliveryError(f"SMTP login refused ({e.smtp_code})", permanent=True) from e
    except smtplib.SMTPRecipientsRefused as e:
        raise DeliveryError(f"recipient refused: {', '.join(e.recipients)}",
                            permanent=True) from e
    except smtplib.SMTPResponseException as e:
        # 4xx: the server asks to try later; 5xx: it will not take this message.
        raise DeliveryError(f"SMTP server answered {e.smtp_code}: {_text(e.smtp_error)}",
                            permanent=e.smtp_code >= 500) from e
    except smtplib.SMTPNotSupportedError as e:
        raise DeliveryError(f"SMTP server does not support it: {e}", permanent=True) from e
    except (smtplib.SMTPException, OSError) as e:  # refused, reset, timed out, TLS failed
        raise DeliveryError(f"SMTP server {smtp.host}:{smtp.port} unreachable: "
                            f"{type(e).__name__}: {e}", permanent=False) from e


def _text(raw: bytes | str) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw
