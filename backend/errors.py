"""The backend's error base: every user-facing failure is an :class:`Asset2VecError`.

Each part keeps its own subclass (``ModelError``, ``LibraryError``, ``PipelineError``, ...) so a caller
can catch one part's failures, or all of them through the base. ``Cancelled`` is the one "stopped on
request" error: inversion, the index pipeline and the service's jobs raise it (or a subclass).
"""

from __future__ import annotations


class Asset2VecError(Exception):
    """A failure the user can act on; the message says what to do."""


class Cancelled(Asset2VecError):
    """The caller asked the work to stop; it stopped early (what was done so far is kept where it says so)."""
