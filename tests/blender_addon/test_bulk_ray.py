"""bulk-tag with ``--ray``: the same per-file task as Ray tasks on a local Ray instance (num_cpus=2).

Skipped only when the optional ``ray`` package is not installed (``pip install ray``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.bulk.driver import bulk_tag
from backend.service.server import Service
from tests.blender_addon.bulk_support import (
    BAD,
    READ_ONLY,
    bulk_options,
    check_updated,
    hashes,
    live_backend,
    make_library,
    read_assets,
)

pytestmark = pytest.mark.slow  # renders with Cycles in Ray workers

ray = pytest.importorskip("ray", reason="the optional `ray` package is not installed (pip install ray)")

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
#: Ray's unix sockets live at ``<temp>/session_<date>_<pid>/sockets/plasma_store`` (about 65 characters
#: below the temp folder), and a socket path may be at most ~107 characters long.
_MAX_RAY_TEMP = 40


def _start_ray(*candidates: Path) -> None:
    """Start the local Ray instance with its files in the first candidate folder short enough for its sockets.

    When none is, the pool starts Ray itself (in Ray's default temp folder).
    """
    temp = next((c / "ray" for c in candidates if len(str(c / "ray")) <= _MAX_RAY_TEMP), None)
    if temp is None:
        return
    root = str(Path(__file__).resolve().parents[2])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": root}}, _temp_dir=str(temp))


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from live_backend(tmp_path_factory)


def test_bulk_with_ray_tags_good_files_and_reports_bad_ones(blender, backend, tmp_path, tmp_path_factory):
    bpy = blender
    lib = tmp_path / "library"
    good = make_library(bpy, lib, 3)
    original = hashes(lib)
    try:
        _start_ray(tmp_path, tmp_path_factory.getbasetemp())
        s = bulk_tag(lib, bulk_options(backend, workers=2, ray=True))
    finally:
        if ray.is_initialized():
            ray.shutdown()
    assert {f["path"].rsplit("/", 1)[-1] for f in s.failures} == {*BAD, READ_ONLY}
    assert s.files_written == 3 and s.embedded == sum(len(a) for n, a in good.items() if n != READ_ONLY)
    after = hashes(lib)
    for name in (*BAD, READ_ONLY):
        assert after[name] == original[name]
    for name, assets in good.items():
        if name == READ_ONLY:
            continue
        found = read_assets(bpy, lib / name)
        assert sorted(found) == sorted(assets)
        for asset in found.values():
            check_updated(asset)
