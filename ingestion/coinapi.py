"""CoinAPI: hourly OHLCV bars over REST and live trades over WebSocket.

REST (Market Data API v1): ``GET /v1/ohlcv/{symbol_id}/history`` with ``period_id``,
``time_start``, ``time_end`` and ``limit``, authenticated by the ``X-CoinAPI-Key``
header, answers a JSON array of periods in ascending time (``time_period_start``,
``price_open`` … ``volume_traded``, ``trades_count``). :class:`CoinApiSource` walks
each asset's hours from its cursor to the last completed hour, one page per asset per
poll, and maps every period to a ``"bar"`` envelope (``interval="1h"``).

WebSocket (Market Data WebSocket v1): after connecting the client sends a ``hello``
with the key and its subscription; the server streams ``trade`` messages, or sends an
``error`` (an invalid key, say) and hangs up. :class:`CoinApiStream` keeps that
connection in a background thread, reconnecting with jittered exponential backoff, and
turns trades into ``"tick"`` envelopes that the source adds to each batch. Ticks don't
move the REST cursor; downstream dedups them by CoinAPI's trade ``uuid``, which the
payload cannot carry, so the stream keeps them in arrival order.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field, ValidationError
from websockets.exceptions import InvalidHandshake, WebSocketException
from websockets.sync.client import ClientConnection, connect

from core.domain import Asset
from core.envelope import Envelope, make
from core.errors import ProviderBadResponse
from core.settings import CoinApiSettings
from ingestion.determinism import floor_hour, require_aware
from ingestion.http import RAW_KEEP_CHARS, ProviderClient, RequestBudget, RetryPolicy
from ingestion.source import Batch, Cursor, Reject

logger = logging.getLogger(__name__)

SOURCE = "coinapi"
KEY_HEADER = "X-CoinAPI-Key"
_HOUR = timedelta(hours=1)
_CURSOR_VERSION = 1

#: Defaults only, to override through ``RWA_SOURCES__COINAPI__SYMBOLS``: CoinAPI symbol
#: ids (``{EXCHANGE}_SPOT_{BASE}_{QUOTE}``) of the catalog's RWA tokens that trade on an
#: exchange CoinAPI covers. PAXG/USDT is a Binance spot pair; XAUT/USDT on Bitrue is the
#: XAUT symbol CoinAPI's own FAQ names. Other catalog tokens have no CEX market we could
#: confirm, so they are left out rather than guessed.
DEFAULT_SYMBOLS: dict[str, str] = {
    "paxg": "BINANCE_SPOT_PAXG_USDT",
    "xaut": "BITRUE_SPOT_XAUT_USDT",
}

_OHLCV_FIELDS = frozenset({"time_period_start", "price_open", "price_high", "price_low",
                           "price_close", "volume_traded"})
_TRADE_FIELDS = frozenset({"symbol_id", "time_exchange", "price", "size"})


# -- query -----------------------------------------------------------------------------
class OhlcvQuery(BaseModel):
    """One page of ``/v1/ohlcv/{symbol_id}/history``.

    ``limit`` is ours (CoinApiSettings has no such field): CoinAPI bills every 100
    items as one request, so 100 is the cheapest full page.
    """

    symbol_id: str = Field(min_length=1)
    time_start: datetime
    time_end: datetime
    limit: int = Field(default=100, ge=1, le=100_000)
    period_id: Literal["1HRS"] = "1HRS"

    @property
    def path(self) -> str:
        return f"/v1/ohlcv/{self.symbol_id}/history"

    def params(self) -> dict[str, str]:
        # CoinAPI reads ISO 8601 times as UTC; its own examples use this form.
        fmt = "%Y-%m-%dT%H:%M:%S"
        return {"period_id": self.period_id, "time_start": self.time_start.strftime(fmt),
                "time_end": self.time_end.strftime(fmt), "limit": str(self.limit)}


class StreamOptions(BaseModel):
    """WebSocket knobs CoinApiSettings does not have; the defaults suit production."""

    queue_size: int = Field(default=10_000, ge=1)
    backoff_base_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=60.0, gt=0)
    open_timeout_s: float = Field(default=10.0, gt=0)
    drain_max: int = Field(default=5_000, ge=1, description="Ticks added to one batch.")


# -- extract ---------------------------------------------------------------------------
class CoinApiClient:
    """CoinAPI's REST endpoints we use, over one :class:`ProviderClient`."""

    def __init__(self, http: ProviderClient) -> None:
        self.http = http

    def ohlcv_history(self, query: OhlcvQuery) -> Any:
        return self.http.get_json(query.path, params=query.params())

    def close(self) -> None:
        self.http.close()


def extract(client: CoinApiClient, query: OhlcvQuery) -> list[Any]:
    """Fetch one page of periods; the only REST I/O of this module.

    Raises:
        ProviderBadResponse: The answer is not an array of OHLCV periods.
        ProviderError: Whatever :class:`ProviderClient` raises.
    """
    data = client.ohlcv_history(query)
    if not isinstance(data, list) or (data and not any(
            isinstance(r, dict) and _OHLCV_FIELDS <= r.keys() for r in data)):
        raise ProviderBadResponse(SOURCE, f"{query.path}: not an array of OHLCV periods",
                                  raw=json.dumps(data)[:RAW_KEEP_CHARS])
    return data


# -- transform -------------------------------------------------------------------------
def parse_time(value: Any) -> datetime:
    """A CoinAPI timestamp (``2017-08-09T14:31:00.0000000Z``) as aware UTC.

    Raises:
        ValueError: Not a timestamp.
    """
    if not isinstance(value, str):
        raise TypeError(f"not a timestamp: {value!r}")
    parsed = datetime.fromisoformat(value)
    # CoinAPI's times are UTC; one without an offset is read as such.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def transform_ohlcv(records: Sequence[Any], *, asset_id: str,
                    window_end: datetime | None = None) -> tuple[list[Envelope], list[Reject]]:
    """Periods → ``"bar"`` envelopes (``event_time`` = ``time_period_start``).

    Periods starting at or after ``window_end`` (an hour still open) are skipped, not
    rejected: a later poll gets them complete.
    """
    envelopes: list[Envelope] = []
    rejects: list[Reject] = []
    for record in records:
        try:
            start = parse_time(record["time_period_start"])
            if window_end is not None and start >= window_end:
                continue
            payload = {"open": record["price_open"], "high": record["price_high"],
                       "low": record["price_low"], "close": record["price_close"],
                       "volume": record["volume_traded"], "interval": "1h"}
            envelopes.append(make(source=SOURCE, kind="bar", asset_id=asset_id,
                                  event_time=start, payload=payload))
        except (KeyError, TypeError, ValueError) as e:
            rejects.append(Reject(record, f"coinapi ohlcv: {_reason(e)}"))
    return envelopes, rejects


def transform_trade(message: Any, *, assets: Mapping[str, str]) -> Envelope | Reject:
    """A WebSocket ``trade`` → a ``"tick"`` envelope (``event_time`` = ``time_exchange``).

    Args:
        message: The decoded message.
        assets: CoinAPI symbol id → asset id.
    """
    try:
        if not isinstance(message, dict) or not _TRADE_FIELDS <= message.keys():
            raise ValueError(f"trade lacks {sorted(_TRADE_FIELDS)}")
        asset_id = assets.get(message["symbol_id"])
        if asset_id is None:
            raise ValueError(f"unsubscribed symbol {message['symbol_id']!r}")
        return make(source=SOURCE, kind="tick", asset_id=asset_id,
                    event_time=parse_time(message["time_exchange"]),
                    payload={"price": message["price"], "volume": message["size"]})
    except (TypeError, ValueError) as e:
        return Reject(message, f"coinapi trade: {_reason(e)}")


def _reason(e: Exception) -> str:
    if isinstance(e, KeyError):
        return f"missing field {e}"
    if isinstance(e, ValidationError):  # the envelope's own check says which rule broke
        return str(e.errors()[0].get("msg", "invalid")).removeprefix("Value error, ")
    return str(e).splitlines()[0]


def _period_start(record: Any) -> datetime | None:
    try:
        return parse_time(record["time_period_start"])
    except (KeyError, TypeError, ValueError):
        return None


# -- the stream ------------------------------------------------------------------------
class _ServerError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class CoinApiStream:
    """CoinAPI trades over WebSocket, in a background thread, into a bounded queue.

    Each connection sends a ``hello`` subscribing to ``trade`` for the given symbols.
    Dropped connections and server ``error`` messages (counted in :attr:`errors` by kind:
    ``auth`` for key problems, ``server`` for others, ``connection`` for network
    failures) lead to a reconnect after exponential backoff with full jitter; a
    ``reconnect`` request from the server is honoured at once. When the queue is full the
    oldest item is dropped (:attr:`dropped`): fresh ticks matter more than old ones.

    Args:
        url: The WebSocket endpoint (``wss://ws.coinapi.io/v1/``).
        api_key: Sent in the ``hello``; never logged.
        assets: CoinAPI symbol id → asset id.
        options: See :class:`StreamOptions`.
    """

    def __init__(self, url: str, api_key: str, assets: Mapping[str, str], *,
                 options: StreamOptions | None = None, rng: random.Random | None = None) -> None:
        self.url = url
        self.assets = dict(assets)
        self.options = options or StreamOptions()
        self.errors: Counter[str] = Counter()
        self.connects = 0
        self.dropped = 0
        self._key = api_key
        self._rng = rng or random.Random()
        self._items: deque[Envelope | Reject] = deque(maxlen=self.options.queue_size)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ws: ClientConnection | None = None
        self._thread = threading.Thread(target=self._run, name="coinapi-ws", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def drain(self, max_items: int) -> list[Envelope | Reject]:
        """Up to ``max_items`` queued ticks and rejects, oldest first, without waiting."""
        with self._lock:
            return [self._items.popleft() for _ in range(min(max_items, len(self._items)))]

    def close(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        ws = self._ws
        if ws is not None:
            ws.close()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _hello(self) -> str:
        # A trailing "$" makes CoinAPI match the symbol id exactly rather than as a prefix.
        return json.dumps({"type": "hello", "apikey": self._key, "heartbeat": False,
                           "subscribe_data_type": ["trade"],
                           "subscribe_filter_symbol_id": [f"{s}$" for s in self.assets]})

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                with connect(self.url, open_timeout=self.options.open_timeout_s) as ws:
                    self._ws = ws
                    if self._stop.is_set():  # close() ran while we were connecting
                        break
                    self.connects += 1
                    ws.send(self._hello())
                    outcome = self._receive(ws)
                if outcome == "reconnect":  # the server asked: no backoff
                    failures = 0
                    continue
                if outcome == "traded":
                    failures = 0
            except _ServerError as e:
                self.errors[e.kind] += 1
                logger.warning("coinapi stream: server error (%s): %s", e.kind, self._redact(e))
            except (OSError, TimeoutError, InvalidHandshake, WebSocketException) as e:
                self.errors["connection"] += 1
                logger.warning("coinapi stream: %s: %s", type(e).__name__, self._redact(e))
            finally:
                self._ws = None
            failures += 1
            cap = min(self.options.backoff_max_s, self.options.backoff_base_s * 2 ** (failures - 1))
            self._stop.wait(self._rng.uniform(0, cap))

    def _receive(self, ws: ClientConnection) -> Literal["traded", "idle", "reconnect"]:
        """Read until the connection ends or the server asks for a reconnect.

        Returns:
            ``reconnect`` when asked to, else whether any trade arrived.

        Raises:
            _ServerError: The server sent an ``error`` message.
        """
        traded = False
        for raw in ws:  # ends when the server closes cleanly
            try:
                message = json.loads(raw)
            except (TypeError, ValueError):
                self._put(Reject(str(raw)[:RAW_KEEP_CHARS], "coinapi stream: not JSON"))
                continue
            kind = message.get("type") if isinstance(message, dict) else None
            if kind == "trade":
                traded = True
                self._put(transform_trade(message, assets=self.assets))
            elif kind == "error":
                text = str(message.get("message", ""))
                auth = re.search(r"key|auth|forbidden|unauthori", text, re.IGNORECASE)
                raise _ServerError("auth" if auth else "server", text)
            elif kind == "reconnect":
                return "reconnect"
        return "traded" if traded else "idle"

    def _redact(self, e: Exception) -> str:
        text = str(e)
        return text.replace(self._key, "***") if self._key else text

    def _put(self, item: Envelope | Reject) -> None:
        with self._lock:
            if len(self._items) == self._items.maxlen:
                self.dropped += 1  # the deque drops its oldest item
            self._items.append(item)


# -- the source ------------------------------------------------------------------------
class CoinApiSource:
    """Hourly bars from CoinAPI's REST API, plus live ticks when ``config.stream``.

    The cursor is ``{"v": 1, "last_period_start": {asset_id: ISO time}}``: the start of
    the last hour covered per asset, whether or not it had a bar. A poll asks, per asset,
    for the hours after it up to the last completed one (``floor_hour(now)`` excluded),
    one page of ``page_limit`` periods; ``more`` is set while a full page left hours
    behind. On the first start each asset goes back ``config.lookback_days``.
    """

    def __init__(self, config: CoinApiSettings, *, assets: Sequence[Asset],
                 transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep, page_limit: int = 100,
                 stream_options: StreamOptions | None = None) -> None:
        self.name = SOURCE
        self.interval_s = config.interval_s
        self.config = config
        self.page_limit = page_limit
        self.stream_options = stream_options or StreamOptions()
        self._key = config.api_key.get_secret_value() if config.api_key else ""
        known = {a.asset_id for a in assets}
        wanted = config.symbols or DEFAULT_SYMBOLS
        self.symbols = {a: s for a, s in wanted.items() if a in known}
        headers = {"Accept": "application/json"}
        if self._key:
            headers[KEY_HEADER] = self._key
        self.client = CoinApiClient(ProviderClient(
            SOURCE, config.base_url, headers=headers, secret_names=frozenset({KEY_HEADER}),
            timeout_s=config.timeout_s, retry=RetryPolicy(attempts=config.max_attempts),
            budget=RequestBudget(config.requests_per_day), transport=transport, sleep=sleep))
        self.stream: CoinApiStream | None = None

    def poll(self, cursor: Cursor | None, now: datetime) -> Batch:
        end = floor_hour(require_aware(now, "now"))
        if self.config.stream and self.stream is None and self.symbols:
            self.stream = CoinApiStream(self.config.ws_url, self._key,
                                        {s: a for a, s in self.symbols.items()},
                                        options=self.stream_options)
            self.stream.start()
        first = end - timedelta(days=self.config.lookback_days)
        marks = dict((cursor or {}).get("last_period_start", {}))
        batch = Batch()
        for asset_id, symbol_id in self.symbols.items():
            start = parse_time(marks[asset_id]) + _HOUR if asset_id in marks else first
            if start >= end:
                continue
            query = OhlcvQuery(symbol_id=symbol_id, time_start=start, time_end=end,
                               limit=self.page_limit)
            records = extract(self.client, query)
            envelopes, rejects = transform_ohlcv(records, asset_id=asset_id, window_end=end)
            batch.envelopes.extend(envelopes)
            batch.rejects.extend(rejects)
            last = end - _HOUR
            if len(records) >= query.limit:  # a full page: more hours may follow
                seen = [t for r in records if (t := _period_start(r)) is not None and t < end]
                if not seen or max(seen) < start:
                    raise ProviderBadResponse(SOURCE, f"{query.path}: a full page without a "
                                              "usable time_period_start in the window",
                                              raw=json.dumps(records)[:RAW_KEEP_CHARS])
                last = floor_hour(max(seen))
                batch.more = batch.more or last + _HOUR < end
            marks[asset_id] = last.isoformat()
        batch.cursor = {"v": _CURSOR_VERSION, "last_period_start": marks}
        if self.stream is not None:
            for item in self.stream.drain(self.stream_options.drain_max):
                (batch.envelopes if isinstance(item, Envelope) else batch.rejects).append(item)
        return batch

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
        self.client.close()
