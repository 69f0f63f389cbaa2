"""Temporary folders of dead processes are removed at start; a live process's folder, or anything unmarked, never.

Real processes: a child makes its folder and is killed with SIGKILL (no cleanup runs), another stays alive.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import tempfolders
from tests.shared import tempfolder_support as support
from tests.shared.tempfolder_support import kill9, spawn


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    with support.children() as procs:
        yield procs


def test_a_killed_process_folder_is_removed_a_live_one_kept(
    tmp_path: Path, children: list[subprocess.Popen[str]]
) -> None:
    dead, dead_dir = spawn(children, tmp_path, "asset2vec-bulk-")
    live, live_dir = spawn(children, tmp_path, "asset2vec-bulk-")
    (dead_dir / "bundle.zip").write_bytes(b"x" * 1000)  # what a killed bulk run leaves
    kill9(dead)
    assert dead_dir.is_dir()  # SIGKILL ran no cleanup
    assert tempfolders.remove_stale(parent=tmp_path) == [dead_dir]
    assert not dead_dir.exists() and live_dir.is_dir() and live.poll() is None
    # The live owner ends: its folder goes at the next start.
    kill9(live)
    assert tempfolders.remove_stale(parent=tmp_path) == [live_dir] and not list(tmp_path.iterdir())


def test_nothing_unmarked_foreign_or_of_another_prefix_is_removed(
    tmp_path: Path, children: list[subprocess.Popen[str]]
) -> None:
    dead, dead_dir = spawn(children, tmp_path, "asset2vec-bulk-")
    kill9(dead)
    marker = json.loads((dead_dir / tempfolders.OWNER_FILE).read_text())
    assert marker["pid"] == dead.pid and marker["host"] == socket.gethostname()
    keep = {
        "asset2vec-bulk-nomarker": None,  # an older release's folder, or another program's
        "asset2vec-bulk-garbled": "{not json",
        "asset2vec-bulk-otherhost": json.dumps({**marker, "host": "elsewhere.example"}),
        "asset2vec-bulk-oddpid": json.dumps({**marker, "pid": "12"}),
        "other-tool-dead": json.dumps(marker),  # a dead owner, but not our prefix
    }
    for name, text in keep.items():
        (tmp_path / name).mkdir()
        if text is not None:
            (tmp_path / name / tempfolders.OWNER_FILE).write_text(text)
    (tmp_path / "asset2vec-bulk-file").write_text(json.dumps(marker))  # a file, not a folder
    assert tempfolders.remove_stale(parent=tmp_path) == [dead_dir]
    assert all((tmp_path / name).is_dir() for name in keep) and (tmp_path / "asset2vec-bulk-file").is_file()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="start times are read from /proc")
def test_a_reused_pid_does_not_keep_a_dead_owner_folder(tmp_path: Path) -> None:
    # This process is alive, but a marker with another start time was written by an earlier process with its PID.
    me = {"host": socket.gethostname(), "pid": os.getpid(), "started": tempfolders.process_started(os.getpid())}
    assert me["started"] is not None
    for name, started in (("asset2vec-x-mine", me["started"]), ("asset2vec-x-earlier", "1")):
        (tmp_path / name).mkdir()
        (tmp_path / name / tempfolders.OWNER_FILE).write_text(json.dumps({**me, "started": started}))
    assert tempfolders.remove_stale(parent=tmp_path) == [tmp_path / "asset2vec-x-earlier"]
    assert (tmp_path / "asset2vec-x-mine").is_dir()


def test_folder_is_removed_when_the_block_ends(tmp_path: Path) -> None:
    with tempfolders.folder("asset2vec-bulk-", parent=tmp_path) as path:
        (path / "f").write_text("x")
        assert tempfolders.remove_stale(parent=tmp_path) == []  # this process owns it: kept while in use
    assert not path.exists()


def test_the_addon_marks_its_folders_and_sweeps_dead_ones_first(
    tmp_path: Path, children: list[subprocess.Popen[str]]
) -> None:
    crashed, crashed_dir = spawn(children, tmp_path, "addon")  # a Blender session that crashed
    assert crashed_dir.name.startswith("asset2vec-thumbs-")
    kill9(crashed)
    live, live_dir = spawn(children, tmp_path, "addon")  # the next session: its first folder sweeps the dead
    assert not crashed_dir.exists() and live_dir.is_dir()
