"""Atomic writes: the old file or the new one after a failure, and the mode the umask gives (0600 for secrets only)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from shared.atomic import atomic_file, atomic_write


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_files_get_the_umask_mode_and_secrets_stay_private(tmp_path: Path) -> None:
    with umask(0o022):
        atomic_write(tmp_path / "a.json", b"{}")
        atomic_write(tmp_path / "token", b"secret", private=True)
        atomic_write(tmp_path / "a.json", b"{}")  # a replaced file too
    with umask(0o027):
        atomic_write(tmp_path / "group.json", b"{}")
    with umask(0o077):
        atomic_write(tmp_path / "mine.json", b"{}")
    assert mode(tmp_path / "a.json") == 0o644
    assert mode(tmp_path / "token") == 0o600
    assert mode(tmp_path / "group.json") == 0o640 and mode(tmp_path / "mine.json") == 0o600


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.json"
    atomic_write(path, b"old")
    with pytest.raises(RuntimeError), atomic_file(path) as f:
        f.write(b"half of the new")
        raise RuntimeError("killed")
    assert path.read_bytes() == b"old" and sorted(p.name for p in path.parent.iterdir()) == ["state.json"]


@pytest.mark.skipif(os.name != "posix", reason="symbolic links")
def test_the_temporary_never_writes_through_a_planted_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Someone who can write in the folder plants a link where the next temporary name will be: it is skipped.
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    (tmp_path / ".out.bin.aaaa.tmp").symlink_to(victim)
    names = iter(["aaaa", "bbbb"])
    monkeypatch.setattr("shared.atomic.secrets.token_hex", lambda n: next(names))
    atomic_write(tmp_path / "out.bin", b"new")
    assert (tmp_path / "out.bin").read_bytes() == b"new" and victim.read_bytes() == b"untouched"
    assert not (tmp_path / "out.bin").is_symlink()
