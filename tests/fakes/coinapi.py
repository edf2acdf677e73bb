"""A fake CoinAPI: the REST OHLCV history endpoint and the trade WebSocket, as documented.

REST: ``ohlcv_route`` answers ``GET /v1/ohlcv/{symbol_id}/history`` for a
:class:`tests.fakes.server.FakeProvider`, checking the ``X-CoinAPI-Key`` header,
filtering periods to ``time_start <= time_period_start < time_end`` and cutting at
``limit``, with CoinAPI's field names and 7-digit fractional timestamps.

WebSocket: :class:`FakeCoinApiWs` runs ``websockets.sync.server.serve`` on
127.0.0.1 in a thread. Each connection must open with a ``hello``; a wrong ``apikey``
gets ``{"type": "error", "message": "Invalid API key"}`` and a close, as the real
server does. Otherwise it sends the scripted trades of the subscribed symbols, carrying
on where the previous connection stopped, and hangs up after ``close_after`` messages
when asked to (to exercise reconnects); after a scripted ``reconnect`` message it sends
nothing more on that connection, leaving the rest for the client's next one.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

from tests.fakes.server import Request, Response, json_response

KEY = "73034021-THIS-IS-SAMPLE-KEY"


def coinapi_time(t: datetime) -> str:
    """CoinAPI's timestamp form: ``2017-08-09T14:31:00.0000000Z``."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def hourly_bars(start: datetime, hours: int, *, price: float = 2000.0) -> list[dict[str, Any]]:
    """``hours`` consecutive 1HRS periods from ``start``, in the history endpoint's shape."""
    bars = []
    for i in range(hours):
        t = start + timedelta(hours=i)
        o = price + i
        bars.append({
            "time_period_start": coinapi_time(t),
            "time_period_end": coinapi_time(t + timedelta(hours=1)),
            "time_open": coinapi_time(t + timedelta(seconds=3)),
            "time_close": coinapi_time(t + timedelta(minutes=59, seconds=57)),
            "price_open": o, "price_high": o + 5.5, "price_low": o - 4.25,
            "price_close": o + 1.0, "volume_traded": 10.0 + i, "trades_count": 100 + i,
        })
    return bars


def ohlcv_route(bars: dict[str, list[dict[str, Any]]], *, key: str = KEY):
    """A route serving ``bars`` (symbol id → periods) from the OHLCV history endpoint."""

    def route(request: Request) -> Response:
        if request.headers.get("x-coinapi-key") != key:
            return json_response({"message": "Invalid API key"}, 401)
        parts = request.path.split("/")  # ['', 'v1', 'ohlcv', symbol_id, 'history']
        if len(parts) != 5 or parts[1:3] != ["v1", "ohlcv"] or parts[4] != "history":
            return json_response({"message": "Not found"}, 404)
        if request.param("period_id") != "1HRS":
            return json_response({"message": "Invalid period_id"}, 400)
        start = _param_time(request.param("time_start"))
        end = _param_time(request.param("time_end"))
        limit = int(request.param("limit") or 100)
        rows = [b for b in bars.get(parts[3], [])
                if start <= _param_time(b["time_period_start"]) < end]
        return json_response(rows[:limit])

    return route


def _param_time(value: str | None) -> datetime:
    assert value is not None, "time parameter missing"
    t = datetime.fromisoformat(value)
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def reconnect(at: datetime) -> dict:
    """The server's request to reconnect, as documented (``within_seconds``, ``before_time``)."""
    return {"type": "reconnect", "within_seconds": 10,
            "before_time": coinapi_time(at + timedelta(seconds=10))}


def trade(symbol_id: str, n: int, *, at: datetime, price: float, size: float = 0.5) -> dict:
    """The ``n``-th trade message of a symbol, in the documented WebSocket shape."""
    return {"type": "trade", "symbol_id": symbol_id, "sequence": n,
            "time_exchange": coinapi_time(at), "time_coinapi": coinapi_time(at),
            "uuid": str(uuid.UUID(int=n)).upper(), "price": price, "size": size,
            "taker_side": "BUY" if n % 2 else "SELL"}


class FakeCoinApiWs:
    """CoinAPI's trade WebSocket on 127.0.0.1; see the module docstring.

    Args:
        messages: What to stream, in order (trades for unsubscribed symbols are skipped).
        key: The API key the ``hello`` must carry.
        close_after: Hang up after this many messages on one connection.
    """

    def __init__(self, messages: Sequence[dict[str, Any] | str], *, key: str = KEY,
                 close_after: int | None = None) -> None:
        self.messages = list(messages)
        self.key = key
        self.close_after = close_after
        self.hellos: list[dict[str, Any]] = []
        self.sent = 0
        self._next = 0
        self._lock = threading.Lock()
        self._server = serve(self._handle, "127.0.0.1", 0, compression=None)
        self.url = f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}/v1/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _handle(self, conn: ServerConnection) -> None:
        try:
            hello = json.loads(conn.recv(timeout=5))
            with self._lock:
                self.hellos.append(hello)
            if hello.get("type") != "hello" or hello.get("apikey") != self.key:
                conn.send(json.dumps({"type": "error", "message": "Invalid API key"}))
                conn.close()
                return
            wanted = {s.rstrip("$") for s in hello.get("subscribe_filter_symbol_id", [])}
            on_this_connection = 0
            while True:
                with self._lock:
                    if self._next >= len(self.messages):
                        break
                    message = self.messages[self._next]
                    self._next += 1
                kind = message.get("type") if isinstance(message, dict) else None
                if kind == "trade" and message.get("symbol_id") not in wanted:
                    continue
                conn.send(message if isinstance(message, str) else json.dumps(message))
                with self._lock:
                    self.sent += 1
                on_this_connection += 1
                if self.close_after and on_this_connection >= self.close_after:
                    conn.close()
                    return
                if kind == "reconnect":  # nothing more here; the client moves on
                    break
            for _ in conn:  # stay open, like the real feed between trades
                pass
        except (ConnectionClosed, TimeoutError):
            pass

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._thread.join(5)
