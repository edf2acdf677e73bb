"""A local SMTP server for tests (aiosmtpd in its own thread) that keeps every message
it accepts, so a test can read what the platform sent."""

from __future__ import annotations

import asyncio
import email
import time
from email import policy
from email.message import EmailMessage
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from rwa.embedded import free_port


class Inbox:
    """The aiosmtpd handler: accepts mail for any address except those in ``refuse``."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.refuse: set[str] = set()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append(message)  # type: ignore[arg-type]
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]

    async def wait_for(self, address: str, *, count: int = 1,
                       timeout_s: float = 10.0) -> list[EmailMessage]:
        """The messages to ``address`` once there are ``count`` of them."""
        deadline = time.monotonic() + timeout_s
        while len(self.to(address)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no email to {address} within {timeout_s} s; "
                                     f"inbox holds {[m['To'] for m in self.messages]}")
            await asyncio.sleep(0.02)
        return self.to(address)


class LocalSmtp:
    """``with LocalSmtp() as smtp:`` a server on 127.0.0.1:``smtp.port``; with
    ``credentials`` it requires AUTH LOGIN/PLAIN (over plain text: it is a test)."""

    def __init__(self, *, credentials: tuple[str, str] | None = None) -> None:
        self.inbox = Inbox()
        self.host = "127.0.0.1"
        self.port = free_port()
        options: dict[str, Any] = {}
        if credentials:
            expected = LoginPassword(credentials[0].encode(), credentials[1].encode())

            def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                              auth_data: Any) -> AuthResult:
                return AuthResult(success=auth_data == expected, handled=False)

            options = {"authenticator": authenticator, "auth_required": True,
                       "auth_require_tls": False}
        self._controller = Controller(self.inbox, hostname=self.host, port=self.port,
                                      **options)

    def __enter__(self) -> Self:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()
