"""bulk-tag with ``--ray``: the same per-file task as Ray tasks on a local Ray instance (num_cpus=2).

Skipped only when the optional ``ray`` package is not installed (``pip install ray``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from bulk_support import BAD, READ_ONLY, bulk_options, check_updated, hashes, live_backend, make_library, read_assets

from backend.bulk.driver import bulk_tag
from backend.service.server import Service

ray = pytest.importorskip("ray", reason="the optional `ray` package is not installed (pip install ray)")


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from live_backend(tmp_path_factory)


def test_bulk_with_ray_tags_good_files_and_reports_bad_ones(blender, backend, tmp_path):
    bpy = blender
    lib = tmp_path / "library"
    good = make_library(bpy, lib, 3)
    original = hashes(lib)
    try:
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
