"""The service's error type: a message for the user plus the HTTP status that fits it."""

from __future__ import annotations


class ServiceError(Exception):
    """A request the backend cannot serve. ``status`` is the HTTP status; the message is shown as is."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class NotFound(ServiceError):
    """An unknown asset, job or resource (HTTP 404)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 404)
