"""The library's user-facing error, and reading the text files artists hand it (tag lists, scores)."""

from __future__ import annotations

import os
from pathlib import Path

from backend.errors import Asset2VecError


class LibraryError(Asset2VecError, ValueError):
    """A catalogue, tag model, query or input file is unusable; the message says what to do about it."""


class CatalogueBusy(LibraryError):
    """Another connection (an index run, a CLI command) held the catalogue's write lock past the busy timeout.

    Nothing was written; the same call can simply be tried again. A service answers it with 503 and
    ``Retry-After: retry_after_s`` instead of making every request wait on SQLite.
    """

    #: Seconds after which trying again makes sense (a service's ``Retry-After``).
    retry_after_s = 1


def read_text_file(path: str | os.PathLike[str], what: str, expected: str) -> tuple[Path, str]:
    """``(path, text)`` of a UTF-8 text file (a BOM is dropped); :class:`LibraryError` when it is missing or not text.

    ``what`` names the file and ``expected`` its format, for the messages (e.g. "scores file", "a CSV of asset,score").
    """
    path = Path(path)
    if not path.is_file():
        raise LibraryError(f"{path}: no such {what} (expected {expected})")
    try:
        return path, path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise LibraryError(f"{path}: the {what} is not a UTF-8 text file (expected {expected})") from None
