"""The project's exception tree. Catch these only at boundaries (actor loops, Serve
exception handlers, CLI commands) and chain with ``raise ... from e``.

    RwaError
    ├── ConfigError            settings that cannot work (missing key, bad URL)
    ├── ServiceError           an embedded or external service failed to start or answer
    │   └── ServiceUnavailable a dependency is down right now (the API answers 503)
    ├── InvalidMessage         a raw message that breaks the envelope contract
    ├── NotFound               an asset, prediction or object that does not exist
    └── ForecastError          a series that cannot be forecast (too short, irregular)
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
