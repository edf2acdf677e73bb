"""The Telegram Bot API as ``sendMessage`` answers, for the notifier's tests.

``POST /bot<token>/sendMessage`` with ``chat_id`` and ``text`` (JSON or form body) →
``{"ok": true, "result": {message_id, date, chat, text}}``; a wrong token → 401, an
unknown chat → 400, each as ``{"ok": false, "error_code", "description"}``. Scripted
failures (``FakeProvider.fail_next``) use :func:`too_many_requests` and
:func:`server_error`, shaped as Telegram sends them.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from typing import Any
from urllib.parse import parse_qs

from tests.fakes.server import Request, Response, json_response

TOKEN = "123456:TEST-bot-token_s3cr3t"
#: Chats the fake bot can write to.
CHATS = {"424242": "private", "-1001234567890": "supergroup", "@rwa_alerts": "channel"}


def too_many_requests(retry_after: int) -> dict[str, Any]:
    return {"ok": False, "error_code": 429,
            "description": f"Too Many Requests: retry after {retry_after}",
            "parameters": {"retry_after": retry_after}}


def server_error() -> dict[str, Any]:
    return {"ok": False, "error_code": 500, "description": "Internal Server Error"}


class TelegramFake:
    """Accepts messages for :data:`CHATS` with :data:`TOKEN`; ``delivered`` holds them."""

    def __init__(self) -> None:
        self.delivered: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Response:
        if request.method != "POST" or not request.path.endswith("/sendMessage"):
            return json_response({"ok": False, "error_code": 404, "description": "Not Found"},
                                 404)
        if request.path != f"/bot{TOKEN}/sendMessage":
            return json_response({"ok": False, "error_code": 401,
                                  "description": "Unauthorized"}, 401)
        if request.headers.get("content-type", "").startswith("application/json"):
            body = json.loads(request.body)
        else:
            body = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        chat_id, text = str(body.get("chat_id", "")), body.get("text")
        if not text:
            return json_response({"ok": False, "error_code": 400,
                                  "description": "Bad Request: message text is empty"}, 400)
        if chat_id not in CHATS:
            return json_response({"ok": False, "error_code": 400,
                                  "description": "Bad Request: chat not found"}, 400)
        with self._lock:
            message = {"message_id": next(self._ids), "date": int(time.time()),
                       "chat": {"id": chat_id, "type": CHATS[chat_id]}, "text": text}
            self.delivered.append(message)
        return json_response({"ok": True, "result": message})
