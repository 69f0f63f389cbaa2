"""The add-on's error base and the errors shared by its modules (capture, .blend files).

Every user-facing failure of the add-on and its headless workers is an :class:`AddonError`; the
message says what to do. The add-on never imports the backend, so it has its own base.
"""

from __future__ import annotations


class AddonError(Exception):
    """A failure the artist can act on; the message says what to do."""


class CaptureError(AddonError, ValueError):
    """The target cannot be captured; the message says why and what to do."""


class BlendFileError(AddonError):
    """A .blend file cannot be opened (or tagged); the file was left untouched.

    The message does not repeat the file's path: callers that report many files prefix it.
    """
