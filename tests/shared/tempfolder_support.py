"""Real owner processes for the temporary-folder tests: a child makes its folder, then waits to be killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: A child that makes its folder (through the add-on's helper, or shared.tempfolders), prints it, and waits.
CHILD = """
import sys, time
if sys.argv[2] == "addon":
    import tempfile
    tempfile.tempdir = sys.argv[1]
    from blender_addon import tempdirs
    path = tempdirs.make("thumbs")
else:
    from shared import tempfolders
    path = tempfolders.make(sys.argv[2], parent=sys.argv[1])
print(path, flush=True)
time.sleep(120)
"""


@contextmanager
def children() -> Iterator[list[subprocess.Popen[str]]]:
    """A list to :func:`spawn` into; every child still running at the end is killed (only these)."""
    procs: list[subprocess.Popen[str]] = []
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)


def spawn(procs: list[subprocess.Popen[str]], parent: Path, prefix: str) -> tuple[subprocess.Popen[str], Path]:
    """A child process that made its folder ``<prefix>*`` in ``parent`` ("addon": the add-on's thumbnail folder,
    made in ``parent`` as its temporary directory); returns it and the folder."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(parent), prefix], stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env
    )
    procs.append(proc)
    assert proc.stdout is not None
    path = Path(proc.stdout.readline().strip())
    assert path.is_dir() and path.parent == parent, path
    return proc, path


def kill9(proc: subprocess.Popen[str]) -> None:
    """SIGKILL: the child runs no cleanup at all."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
