"""The service's error type: a message for the user plus the HTTP status that fits it."""

from __future__ import annotations

from backend.errors import Asset2VecError
from shared import api

#: Seconds a client is told to wait before retrying a 503.
RETRY_AFTER_S = 2


class ServiceError(Asset2VecError):
    """A request the backend cannot serve. ``status`` is the HTTP status; the message is shown as is.

    ``code``: the machine-readable :attr:`shared.api.ErrorReply.code` (e.g. :data:`shared.api.BUSY`), if any.
    """

    def __init__(self, message: str, status: int = 400, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code = status, code

    def headers(self) -> dict[str, str]:
        """Extra response headers: a 503 says when to try again (``Retry-After``, seconds)."""
        return {"Retry-After": str(RETRY_AFTER_S)} if self.status == 503 else {}

    def reply(self) -> api.ErrorReply:
        """The error's JSON body."""
        return api.ErrorReply(detail=str(self), code=self.code)


class NotFound(ServiceError):
    """An unknown asset, job or resource (HTTP 404)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 404)


class Busy(ServiceError):
    """The backend cannot take this now (queue full, a model being built or switched): 409/503, code "busy"."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message, status, api.BUSY)
