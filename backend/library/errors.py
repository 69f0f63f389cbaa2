"""The library's user-facing error, and reading the text files artists hand it (tag lists, scores)."""

from __future__ import annotations

import os
from pathlib import Path


class LibraryError(ValueError):
    """A catalogue, tag model, query or input file is unusable; the message says what to do about it."""


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
