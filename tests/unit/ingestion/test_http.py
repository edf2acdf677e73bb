"""The shared provider client: retries, backoff, Retry-After, budgets, error mapping,
and keys kept out of messages."""

from __future__ import annotations

import httpx
import pytest

from core.errors import (
    BudgetExhausted,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderRateLimited,
    ProviderUnavailable,
)
from ingestion.http import ProviderClient, RequestBudget, RetryPolicy, retry_after_seconds

KEY = "sk-live-123456"


def client(responses, *, sleeps=None, **kw) -> ProviderClient:
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, Exception):
            raise item
        return item

    return ProviderClient("acme", "http://acme.test", headers={"X-Key": KEY},
                          secret_names=frozenset({"X-Key"}),
                          transport=httpx.MockTransport(handler),
                          sleep=(sleeps if sleeps is not None else []).append, **kw)


def test_429_waits_what_retry_after_says_then_succeeds():
    sleeps: list[float] = []
    c = client([httpx.Response(429, headers={"Retry-After": "3"}),
                httpx.Response(200, json={"ok": True})], sleeps=sleeps)
    assert c.get_json("/x") == {"ok": True}
    assert sleeps == [3.0] and c.retries == 1


def test_retry_after_longer_than_we_wait_surfaces_rate_limited():
    c = client([httpx.Response(429, headers={"Retry-After": "600"})])
    with pytest.raises(ProviderRateLimited) as e:
        c.get_json("/x")
    assert e.value.retry_after_s == 600


def test_5xx_backs_off_exponentially_with_jitter_then_gives_up():
    sleeps: list[float] = []
    c = client([httpx.Response(503, text="down")], sleeps=sleeps,
               retry=RetryPolicy(attempts=4, base_s=1, max_s=30))
    with pytest.raises(ProviderUnavailable):
        c.get_json("/x")
    assert len(sleeps) == 3 and c.requests == 4
    assert all(0 <= s <= cap for s, cap in zip(sleeps, (1, 2, 4)))


def test_timeout_and_refused_connection_are_unavailable():
    for error in (httpx.ReadTimeout("slow"), httpx.ConnectError("refused")):
        with pytest.raises(ProviderUnavailable):
            client([error], retry=RetryPolicy(attempts=2)).get_json("/x")


def test_401_is_an_auth_error_without_retry_and_without_the_key():
    c = client([httpx.Response(401, text=f"invalid key {KEY}")])
    with pytest.raises(ProviderAuthError) as e:
        c.get_json("/x")
    assert c.requests == 1 and KEY not in str(e.value) and "***" in str(e.value)


@pytest.mark.parametrize("response", [
    httpx.Response(200, text="<html>maintenance</html>", headers={"content-type": "text/html"}),
    httpx.Response(200, text='{"data": [1, 2', headers={"content-type": "application/json"}),
    httpx.Response(404, json={"error": "no such symbol"}),
])
def test_unusable_answers_are_bad_responses_with_the_raw_body(response):
    with pytest.raises(ProviderBadResponse) as e:
        client([response]).get_json("/x")
    assert e.value.raw


def test_budget_refuses_before_spending():
    c = client([httpx.Response(200, json=[])], budget=RequestBudget(2, window_s=60))
    c.get_json("/a")
    c.get_json("/b")
    with pytest.raises(BudgetExhausted) as e:
        c.get_json("/c")
    assert c.requests == 2 and 0 < e.value.reset_in_s <= 60


def test_budget_window_rolls():
    now = [0.0]
    budget = RequestBudget(1, window_s=10, clock=lambda: now[0])
    budget.take("p")
    with pytest.raises(BudgetExhausted):
        budget.take("p")
    now[0] = 10.5
    budget.take("p")
    assert budget.remaining == 0


def test_retry_after_parses_seconds_and_http_dates():
    assert retry_after_seconds("7") == 7
    assert retry_after_seconds("Wed, 25 Nov 2026 12:00:10 GMT", now=1795608000.0) == 10
    assert retry_after_seconds("soon") is None
