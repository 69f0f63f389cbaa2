"""``asset2vec index --ray``: the capture stage as one Ray task per .blend on a local Ray instance (num_cpus=2).

A tiny library (3 .blend files, 4 marked boxes) captured at 32 px with 2 samples: once by the single headless
worker, once on Ray with one Ray worker SIGKILLed after its first asset (the test-only marker of
:data:`backend.bulk.workers.KILL_ONCE_ENV`). Skipped only when the optional ``ray`` package is missing.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from backend.bulk.workers import KILL_ONCE_ENV
from backend.features.multiview import DEFAULT_SPEC, _read_cache, cache_path, compute_view_features, views_digest
from backend.library.catalogue import Catalogue
from backend.lifecycle.home import LibraryHome
from backend.lifecycle.index import (
    MAX_CAPTURE_ATTEMPTS,
    IndexOptions,
    IndexSummary,
    PipelineError,
    _capture,
)
from backend.lifecycle.progress import StageProgress
from backend.lifecycle.ray_capture import LOCAL_RAY
from shared.bundle import read_bundle
from tests.backend.lifecycle.conftest import FAST
from tests.blender_addon.bulk_support import make_library

pytestmark = pytest.mark.slow  # renders with Cycles in a worker process and in Ray workers

ray = pytest.importorskip("ray", reason="the optional `ray` package is not installed (pip install ray)")

ROOT = Path(__file__).resolve().parents[3]
#: Ray's unix sockets live about 65 characters below its temp folder; a socket path may be ~107 long.
_MAX_RAY_TEMP = 40


def _capture_into(src: Path, home: LibraryHome, **kw: Any) -> tuple[dict[str, Any], IndexSummary, float]:
    """Run the index's capture stage alone; ``(its result, the summary, seconds)``."""
    home.create()
    summary = IndexSummary(home=str(home.root))
    t0 = time.monotonic()
    result = _capture(src, home, IndexOptions(size=32, samples=2, **kw), StageProgress(["capture"], None, None), summary)
    return result, summary, time.monotonic() - t0


def _bundles(home: LibraryHome) -> dict[str, dict[str, Any]]:
    """``{bundle folder: transforms.json}`` of every complete bundle of the home."""
    out = {}
    for t in sorted(home.bundles.glob("*/transforms.json")):
        read_bundle(t.parent, expected_size=32)  # complete: 18 readable views of the right size
        out[t.parent.name] = json.loads(t.read_text())
    return out


def _views(folder: Path) -> np.ndarray:
    """The 18 views of a bundle as one float array in [0, 1]."""
    b = read_bundle(folder)
    return np.stack([np.asarray(Image.open(io.BytesIO(b.image_bytes(i))), dtype=np.float32) / 255.0
                     for i in range(len(b.frames))])


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:
    import bpy

    lib = tmp_path_factory.mktemp("ray_library")
    files = make_library(bpy, lib, 3, bad=False)  # prop_00 (2 boxes), prop_01, prop_02
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return lib.resolve(), files


@pytest.fixture(scope="module")
def plain(library, tmp_path_factory) -> tuple[LibraryHome, dict[str, Any]]:
    home = LibraryHome.at(tmp_path_factory.mktemp("plain_home"))
    result, summary, seconds = _capture_into(library[0], home)
    print(f"plain capture: {summary.captured} assets in {seconds:.1f} s")
    return home, result


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A local Ray with 2 worker CPUs whose workers see the kill marker's path (set before Ray starts)."""
    base = tmp_path_factory.getbasetemp()
    marker = base / "kill-once"
    os.environ[KILL_ONCE_ENV] = str(marker)
    temp = base / "ray" if len(str(base / "ray")) <= _MAX_RAY_TEMP else None
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}}, **({"_temp_dir": str(temp)} if temp else {}))
    try:
        yield marker
    finally:
        ray.shutdown()
        os.environ.pop(KILL_ONCE_ENV, None)


@pytest.fixture(scope="module")
def on_ray(library, ray_cluster, tmp_path_factory) -> tuple[LibraryHome, dict[str, Any], IndexSummary]:
    """The library captured on Ray, one Ray worker killed after its first asset."""
    ray_cluster.write_text("kill the first capture task that reaches an asset")
    home = LibraryHome.at(tmp_path_factory.mktemp("ray_home"))
    result, summary, seconds = _capture_into(library[0], home, ray_address=LOCAL_RAY)
    print(f"ray capture: {summary.captured} assets in {seconds:.1f} s")
    return home, result, summary


def test_index_with_ray_end_to_end(library, plain, tmp_path, run_index):
    """`asset2vec index FOLDER --ray` (a local Ray started by the command): the catalogue holds the assets the
    plain capture finds. Runs before the module's Ray starts (one Ray instance at a time on a small machine)."""
    home = LibraryHome.at(tmp_path / "home")
    _, events = run_index([str(library[0]), "--home", str(home.root), *FAST, "--ray"])
    summary = events[-1]
    assert summary["event"] == "summary" and summary["captured"] == 4 and not summary["failures"], summary
    assert any(e.get("stage") == "capture" and "on Ray" in e.get("message", "") for e in events)
    expected = {t["asset"]["name"] for t in _bundles(plain[0]).values()}
    with Catalogue(home.catalogue) as cat:
        assert set(cat.codes(summary["model_id"]).names) == expected
        assert cat.count("appearance") == len(expected)
    # The appearance features were computed by Ray tasks (the head only read them from the bundles' caches) and
    # are what this machine computes: before the instant encoder, which reads them (train stage), so the features
    # stage finds them all cached.
    assert any(e.get("stage") == "train" and "appearance features" in e.get("message", "")
               and "on Ray" in e.get("message", "") for e in events)
    assert summary["encoder"]["kind"] == "feature"
    bundle = read_bundle(next(home.bundles.glob("*/transforms.json")).parent)
    cached = _read_cache(cache_path(bundle, DEFAULT_SPEC), views_digest(bundle))
    assert cached is not None
    here = compute_view_features(bundle, DEFAULT_SPEC)
    for layer, values in here.items():
        assert np.abs(cached[layer] - values).max() < 0.02 * max(float(np.abs(values).max()), 1.0), layer


def test_a_backend_started_with_ray_builds_models_on_ray(library, tmp_path):
    """`asset2vec serve --ray` (the add-on's Build Model): the service's build job captures and computes the
    appearance features on Ray. Before the module's Ray starts, like the test above."""
    import threading

    from backend.service.engine import Engine
    from shared import api

    engine = Engine.open_home(LibraryHome.at(tmp_path / "home"), ray_address=LOCAL_RAY)
    messages: list[str] = []
    try:
        result = engine.builder.build(str(library[0]), api.IndexRequest(folder=str(library[0]), steps=20, size=32,
                                                                         samples=4),
                                      lambda fraction, message: messages.append(message), threading.Event())
        assert result.captured == 4 and not result.failures, result
        assert engine.model_id == result.model_id
    finally:
        engine.close()
    assert any("capture" in m and "on Ray" in m for m in messages), messages
    assert any("features" in m and "on Ray" in m for m in messages), messages


def test_ray_capture_gives_the_same_bundles_as_the_plain_capture(plain, on_ray):
    (plain_home, plain_result), (ray_home, ray_result, summary) = plain, on_ray
    expected, got = _bundles(plain_home), _bundles(ray_home)
    assert len(expected) == 4 and sorted(got) == sorted(expected)
    for name, transforms in expected.items():
        assert got[name] == transforms  # same asset (name, hash, source, tags) and the same 18 cameras
        # The same pixels (identical here; the PNG bytes differ): a small margin for Cycles' noise elsewhere.
        a, b = _views(plain_home.bundles / name), _views(ray_home.bundles / name)
        assert a.shape == b.shape == (18, 32, 32, 4) and float(np.abs(a - b).mean()) < 0.005
    # The pruning step gets what the single worker reports.
    for key in ("opened", "names", "present"):
        assert sorted(ray_result[key]) == sorted(plain_result[key]), key
    assert summary.captured == 4 and not summary.failures
    assert not list(ray_home.bundles.glob(".*"))  # no half-written bundle left


def test_a_killed_ray_worker_costs_its_file_a_retry_not_the_run(on_ray, ray_cluster):
    home, _, summary = on_ray
    assert not ray_cluster.exists()  # a worker took the marker: it was SIGKILLed mid-file
    assert summary.captured == 4 and not summary.failures  # Ray ran that file again
    assert not home.read_state()["capture_attempts"]


def test_a_rerun_on_ray_renders_nothing_up_to_date(library, on_ray):
    home, _, _ = on_ray
    before = {p: p.stat().st_mtime_ns for p in home.bundles.glob("*/views/00.png")}
    result, summary, _ = _capture_into(library[0], home, ray_address=LOCAL_RAY)
    assert (summary.captured, summary.capture_up_to_date) == (0, 4) and not summary.failures
    assert {p: p.stat().st_mtime_ns for p in home.bundles.glob("*/views/00.png")} == before
    assert len(result["opened"]) == 3


def test_a_file_remembered_as_crashing_is_skipped_on_ray(library, ray_cluster, tmp_path):
    """A file whose every attempt died in an earlier run is reported, not sent; the others are captured."""
    lib, files = library
    home = LibraryHome.at(tmp_path / "home").create()
    bad = str(lib / "prop_01.blend")
    home.write_state({"capture_attempts": {bad: MAX_CAPTURE_ATTEMPTS}})  # as a run whose retries all died leaves it
    result, summary, _ = _capture_into(lib, home, ray_address=LOCAL_RAY)
    assert summary.failures == [f"{bad}: skipped, Blender crashed on it before"]
    assert summary.capture_up_to_date == 0 and summary.captured == sum(len(a) for f, a in files.items()
                                                                          if f != "prop_01.blend")
    assert bad not in result["opened"]


def test_two_asset_libraries_laid_out_alike_never_overwrite_each_other(library, ray_cluster, tmp_path):
    """Names are relative to each asset library's catalog file: two libraries with the same file under one indexed
    folder give their assets the same names. The first file in scan order keeps each name, plain and on Ray alike;
    the other's assets are reported, never written over the first's bundles."""
    import shutil

    lib, files = library
    studio = tmp_path / "studio"
    for part in ("a_props", "b_props"):
        (studio / part).mkdir(parents=True)
        (studio / part / "blender_assets.cats.txt").write_text("VERSION 1\n")
        shutil.copy2(lib / "prop_01.blend", studio / part / "prop_01.blend")
    shutil.copy2(lib / "prop_02.blend", studio / "b_props" / "prop_02.blend")  # no twin: captured
    expected = {f"prop_01/{a}" for a in files["prop_01.blend"]} | {f"prop_02/{a}" for a in files["prop_02.blend"]}
    for address in (None, LOCAL_RAY):
        home = LibraryHome.at(tmp_path / f"home-{address}")
        _, summary, _ = _capture_into(studio, home, ray_address=address)
        stored = {t["asset"]["name"]: t["asset"]["source_blend"] for t in _bundles(home).values()}
        assert set(stored) == expected, address
        assert all("/a_props/" in src for name, src in stored.items() if name.startswith("prop_01/")), stored
        assert len(summary.failures) == len(files["prop_01.blend"]), summary.failures
        assert all("b_props/prop_01.blend: not captured" in f and "like an asset of" in f
                   for f in summary.failures), summary.failures


def test_an_unreachable_cluster_is_a_clear_error_at_once(library, tmp_path):
    t0 = time.monotonic()
    with pytest.raises(PipelineError, match="no Ray cluster answers at 127.0.0.1:1"):
        _capture_into(library[0], LibraryHome.at(tmp_path / "home"), ray_address="127.0.0.1:1")
    assert time.monotonic() - t0 < 10  # Ray itself would wait minutes
