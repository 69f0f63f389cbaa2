"""Atomic file writes: a kill at any moment leaves the old file or the new one, never half of either.

Files get the mode any program's new files get (``0666`` less the umask, typically ``0644``), so a home shared
between users stays readable; ``private=True`` keeps a secret (a token) at ``0600``. :func:`tempfile.mkstemp`
is not used for the temporary file: it always creates ``0600``, which the rename would carry over.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

#: Flags of the temporary file: a new file only (never an existing one, nor through a link), binary on Windows.
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


@contextmanager
def atomic_file(path: str | os.PathLike[str], private: bool = False) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for writing; on success flush, fsync and rename it over ``path``.

    ``private``: readable by the owner only (``0600``), for secrets; otherwise the umask decides (``0644``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_beside(path, 0o600 if private else 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write(path: str | os.PathLike[str], data: bytes, private: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (``private``: mode ``0600``, see :func:`atomic_file`)."""
    with atomic_file(path, private=private) as f:
        f.write(data)


def _create_beside(path: Path, mode: int) -> tuple[int, str]:
    """A new, uniquely named hidden file next to ``path``, created with ``mode`` less the umask."""
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, _FLAGS, mode), tmp
        except FileExistsError:
            continue  # another writer drew the same name: draw again
    raise FileExistsError(f"no free temporary name beside {path}")
