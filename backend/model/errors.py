"""User-facing errors of the NeRF engine."""

from __future__ import annotations

from backend.errors import Asset2VecError


class ModelError(Asset2VecError, ValueError):
    """A library, checkpoint or request the NeRF engine cannot use; the message says what to do."""
