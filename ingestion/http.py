"""The one HTTP client every provider connector talks through.

It owns what all providers share: timeouts, retries with exponential backoff and full
jitter (tenacity), honouring ``429`` + ``Retry-After``, a per-provider request budget,
and turning whatever comes back into JSON or a typed :class:`core.errors.ProviderError`.
Connectors add only their endpoints, auth and mapping.

Keys never reach a log line: auth travels in headers or parameters that are redacted
from every message this module writes, and httpx's own request log is kept at WARNING.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from core.errors import (
    BudgetExhausted,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderError,
    ProviderRateLimited,
    ProviderUnavailable,
)

log = logging.getLogger(__name__)
# httpx logs every request URL at INFO, query string included: some providers take the
# key as a parameter, so that log stays off.
logging.getLogger("httpx").setLevel(logging.WARNING)

#: How much of an unusable body is kept for the dead-letter topic.
RAW_KEEP_CHARS = 4000


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try one request.

    Attributes:
        attempts: Tries in all, the first included.
        base_s: First backoff; doubled each retry, with full jitter.
        max_s: Longest single wait, Retry-After included (a longer Retry-After gives up
            and surfaces :class:`ProviderRateLimited` so the actor's loop can wait).
    """

    attempts: int = 4
    base_s: float = 0.5
    max_s: float = 30.0


class RequestBudget:
    """At most ``limit`` requests per rolling ``window_s``, shared by one provider's
    threads. ``limit=None`` means no budget of ours (the provider's 429 still counts)."""

    def __init__(self, limit: int | None, window_s: float = 86_400.0, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._spent: deque[float] = deque()
        self._lock = threading.Lock()

    def take(self, provider: str) -> None:
        """Spend one request, or raise :class:`BudgetExhausted` without spending."""
        if self.limit is None:
            return
        with self._lock:
            now = self._clock()
            while self._spent and now - self._spent[0] >= self.window_s:
                self._spent.popleft()
            if len(self._spent) >= self.limit:
                reset_in = self.window_s - (now - self._spent[0])
                raise BudgetExhausted(
                    provider, f"request budget of {self.limit} per {self.window_s:.0f} s spent",
                    reset_in_s=reset_in)
            self._spent.append(now)

    @property
    def remaining(self) -> int | None:
        if self.limit is None:
            return None
        with self._lock:
            now = self._clock()
            used = sum(1 for t in self._spent if now - t < self.window_s)
            return self.limit - used


class _Retryable(Exception):
    """Internal: a failure worth another try; ``wait_s`` is what the provider asked for."""

    def __init__(self, error: ProviderError, wait_s: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.wait_s = wait_s


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


class ProviderClient:
    """JSON over HTTP to one provider, with retries, backoff, 429 handling and a budget.

    Args:
        provider: Name used in errors, logs and metrics (``coinapi``, ``bitquery``…).
        base_url: The API root.
        headers: Sent with every request (auth headers go here).
        params: Query parameters sent with every request (key parameters go here).
        secret_names: Header/parameter names whose values are secrets, for redaction.
        timeout_s: Connect/read/write/pool timeout of one try.
        retry: See :class:`RetryPolicy`.
        budget: See :class:`RequestBudget`; ``None`` for no budget.
        transport: An httpx transport to swap in (tests); default: the network.
        sleep: How to wait between tries (tests pass a recorder).
    """

    def __init__(self, provider: str, base_url: str, *,
                 headers: Mapping[str, str] | None = None,
                 params: Mapping[str, str] | None = None,
                 secret_names: frozenset[str] = frozenset(),
                 timeout_s: float = 10.0,
                 retry: RetryPolicy = RetryPolicy(),
                 budget: RequestBudget | None = None,
                 transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.provider = provider
        self.retry = retry
        self.budget = budget or RequestBudget(None)
        self._secrets = {v for k, v in {**(headers or {}), **(params or {})}.items()
                         if k in secret_names and v}
        self._sleep = sleep
        self._http = httpx.Client(base_url=base_url, headers=dict(headers or {}),
                                  params=dict(params or {}), timeout=timeout_s,
                                  transport=transport, follow_redirects=False)
        self.requests = 0
        self.retries = 0

    # -- public --------------------------------------------------------------------------
    def get_json(self, path: str, *, params: Mapping[str, Any] | None = None) -> Any:
        return self.request_json("GET", path, params=params)

    def post_json(self, path: str, body: Any, *,
                  params: Mapping[str, Any] | None = None) -> Any:
        return self.request_json("POST", path, json_body=body, params=params)

    def request_json(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                     json_body: Any = None) -> Any:
        """One logical request: tried up to ``retry.attempts`` times.

        Raises:
            ProviderAuthError, ProviderRateLimited, ProviderUnavailable,
            ProviderBadResponse, BudgetExhausted: see core.errors.
        """
        retrying = Retrying(
            stop=stop_after_attempt(self.retry.attempts),
            wait=self._wait,
            retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
            sleep=self._sleep,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            return retrying(self._once, method, path, params, json_body)
        except _Retryable as e:
            raise e.error from e

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ProviderClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    # -- one try -------------------------------------------------------------------------
    def _once(self, method: str, path: str, params: Mapping[str, Any] | None,
              json_body: Any) -> Any:
        self.budget.take(self.provider)
        self.requests += 1
        try:
            response = self._http.request(method, path, params=params, json=json_body)
        except httpx.TimeoutException as e:
            raise _Retryable(ProviderUnavailable(self.provider, f"timeout on {path}")) from e
        except httpx.TransportError as e:
            raise _Retryable(ProviderUnavailable(
                self.provider, f"{type(e).__name__} on {path}: {self.redact(str(e))}")) from e
        return self._parse(response, path)

    def _parse(self, response: httpx.Response, path: str) -> Any:
        status = response.status_code
        if status in (401, 403):
            raise ProviderAuthError(
                self.provider, f"{status} on {path}: key missing, wrong or expired "
                f"({self._snippet(response)})")
        if status == 429:
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            error = ProviderRateLimited(self.provider, f"429 on {path}", retry_after_s=wait)
            if wait is not None and wait > self.retry.max_s:
                raise error  # longer than we wait inline: the actor's loop backs off
            raise _Retryable(error, wait)
        if status >= 500:
            raise _Retryable(ProviderUnavailable(
                self.provider, f"{status} on {path}: {self._snippet(response)}"))
        if status >= 400:
            raise ProviderBadResponse(
                self.provider, f"{status} on {path}: {self._snippet(response)}",
                raw=self._raw(response))
        ctype = response.headers.get("content-type", "")
        if "json" not in ctype and "graphql" not in ctype:
            raise ProviderBadResponse(
                self.provider, f"expected JSON from {path}, got {ctype or 'no content type'}",
                raw=self._raw(response))
        try:
            return json.loads(response.content)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ProviderBadResponse(
                self.provider, f"unparsable JSON from {path}: {e}", raw=self._raw(response)
            ) from e

    def _snippet(self, response: httpx.Response) -> str:
        return self.redact(response.text[:200].replace("\n", " "))

    def _raw(self, response: httpx.Response) -> str:
        return self.redact(response.text[:RAW_KEEP_CHARS])

    # -- backoff -------------------------------------------------------------------------
    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        asked = error.wait_s if isinstance(error, _Retryable) else None
        if asked is not None:
            return min(asked, self.retry.max_s)
        cap = min(self.retry.max_s, self.retry.base_s * 2 ** (state.attempt_number - 1))
        return random.uniform(0, cap)  # full jitter

    def _before_sleep(self, state: RetryCallState) -> None:
        self.retries += 1
        error = state.outcome.exception() if state.outcome else None
        log.warning("%s; try %d of %d", error, state.attempt_number + 1, self.retry.attempts)
