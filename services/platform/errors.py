"""Domain errors raised by services; the web layer maps each to one HTTP status in one place."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """Base of every expected failure; ``message`` is safe to show to the caller."""

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class InvalidInput(ServiceError):
    """The request's data breaks a validation rule."""


class Unauthorized(ServiceError):
    """No credentials, or credentials that are not valid."""


class Forbidden(ServiceError):
    """Valid credentials that do not allow this."""


class NotFound(ServiceError):
    """The thing asked for does not exist."""


class Conflict(ServiceError):
    """The request clashes with the current state."""


class UpstreamError(ServiceError):
    """An external service (YClients, the WhatsApp gateway) refused or failed."""


class Unavailable(ServiceError):
    """A dependency of ours is down or did not answer in time."""
