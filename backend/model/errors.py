"""User-facing errors of the NeRF engine."""

from __future__ import annotations


class ModelError(ValueError):
    """A library, checkpoint or request the NeRF engine cannot use; the message says what to do."""
