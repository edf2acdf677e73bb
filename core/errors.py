"""The project's exception tree. Catch these only at boundaries (actor loops, Serve
exception handlers, CLI commands) and chain with ``raise ... from e``.

    RwaError
    ├── ConfigError            settings that cannot work (missing key, bad URL)
    ├── ServiceError           an embedded or external service failed to start or answer
    │   └── ServiceUnavailable a dependency is down right now (the API answers 503)
    ├── InvalidMessage         a raw message that breaks the envelope contract
    ├── ProviderError          a data provider's API failed; ``kind`` names how
    │   ├── ProviderAuthError      401/403: missing, wrong or expired key (not retried)
    │   ├── ProviderRateLimited    429 still after retries; ``retry_after_s``
    │   ├── ProviderUnavailable    5xx, timeout, connection refused, still after retries
    │   ├── ProviderBadResponse    HTML, partial JSON, a changed schema; ``raw`` kept
    │   └── BudgetExhausted        our own per-provider request budget is spent
    ├── NotFound               an asset, prediction or object that does not exist
    ├── ForecastError          a series that cannot be forecast (too short, irregular)
    ├── DeliveryError          a notification (email, …) was not delivered; ``permanent``
    │                          says whether trying the same message again can help
    │   └── DeliveryRateLimited    the channel asked us to wait ``retry_after_s`` first
    ├── AlertError             an alert request the alert domain refuses (``core.alerts``)
    │   ├── InvalidCondition       a condition value or notification target that cannot work
    │   └── InvalidTransition      a lifecycle step the alert's state does not allow
    └── RegistryError          a model artifact or its metrics the registry refuses
"""

from __future__ import annotations


class RwaError(Exception):
    """Base of every error the project raises on purpose."""


class ConfigError(RwaError):
    """Settings that cannot work."""


class ServiceError(RwaError):
    """An embedded or external service failed to start or to answer."""


class ServiceUnavailable(ServiceError):
    """A dependency is down right now; callers degrade instead of crashing."""


class InvalidMessage(RwaError):
    """A raw message that breaks the envelope contract; ``reason`` says which rule."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotFound(RwaError):
    """The object asked for does not exist."""


class ForecastError(RwaError):
    """A series that cannot be forecast as given."""


class DeliveryError(RwaError):
    """A notification was not delivered. ``permanent`` is true when sending the same
    message again cannot succeed (recipient refused, bad credentials, not configured);
    false for outages worth a retry (connection refused, timeouts, 4xx replies)."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class DeliveryRateLimited(DeliveryError):
    """The channel refused for now and said when to come back (Telegram's 429
    ``retry_after``, a webhook's ``Retry-After``); never permanent."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message, permanent=False)
        self.retry_after_s = retry_after_s


class AlertError(RwaError):
    """An alert request the alert domain refuses."""


class InvalidCondition(AlertError):
    """A condition value (or notification target) that cannot work; the message says why."""


class InvalidTransition(AlertError):
    """A lifecycle step the alert's current state does not allow."""

    def __init__(self, current: str, target: str, message: str) -> None:
        super().__init__(message)
        self.current = current
        self.target = target


class RegistryError(RwaError):
    """A model version the registry refuses: no artifact, bad metrics, a duplicate."""


class ProviderError(RwaError):
    """A data provider's API failed; ``kind`` is the label errors are counted by."""

    kind = "provider"

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider


class ProviderAuthError(ProviderError):
    """The key is missing, wrong or expired; retrying cannot help."""

    kind = "auth"


class ProviderRateLimited(ProviderError):
    """The provider still answers 429 after our retries."""

    kind = "rate_limited"

    def __init__(self, provider: str, message: str, *, retry_after_s: float | None) -> None:
        super().__init__(provider, message)
        self.retry_after_s = retry_after_s


class ProviderUnavailable(ProviderError):
    """5xx, timeouts or refused connections, still after our retries."""

    kind = "unavailable"


class ProviderBadResponse(ProviderError):
    """An answer we cannot use (HTML, partial JSON, a changed schema); ``raw`` keeps it
    (truncated) for the dead-letter topic."""

    kind = "bad_response"

    def __init__(self, provider: str, message: str, *, raw: str | None = None) -> None:
        super().__init__(provider, message)
        self.reason = message
        self.raw = raw


class BudgetExhausted(ProviderError):
    """Our own request budget for this provider is spent until ``reset_in_s``."""

    kind = "budget"

    def __init__(self, provider: str, message: str, *, reset_in_s: float) -> None:
        super().__init__(provider, message)
        self.reset_in_s = reset_in_s
