"""The library's user-facing error."""

from __future__ import annotations


class LibraryError(ValueError):
    """A catalogue, tag model, query or input file is unusable; the message says what to do about it."""
