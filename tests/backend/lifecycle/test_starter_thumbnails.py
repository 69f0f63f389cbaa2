"""Issue 19: a run carries its assets' captured thumbnail views (``thumbnails.npz``), so a fresh home serves the
starter model's thumbnails as the captured views, never as decoder renders; an older run without the file
still works (the decoder renders, as before)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from backend.library.run_thumbnails import THUMBNAILS_FILE, read_thumbnails, write_thumbnails
from backend.lifecycle.home import LibraryHome
from backend.lifecycle.starter import (
    DEFAULT_OUT,
    MANIFEST_FILE,
    _starter_thumbnails,
    build_starter,
    default_cache,
    load_recipe,
    starter_manifest,
    starter_run_dir,
)
from backend.service.engine import Engine
from backend.service.server import Service
from backend.training.data import find_bundles
from shared import api
from shared.bundle import read_bundle
from tests.backend import synthetic
from tests.backend.service import service_support as support

P = api.API_PREFIX


def _views(bundles: Path) -> dict[str, bytes]:
    """The thumbnail view's PNG bytes of every bundle under ``bundles``, by asset name."""
    out = {}
    for folder in find_bundles(bundles):
        b = read_bundle(folder)
        out[b.asset.name] = b.image_bytes(api.THUMBNAIL_VIEW)
    return out


def test_the_file_round_trips_and_a_damaged_one_is_ignored(tmp_path: Path) -> None:
    pngs = {"chairs/Chair_00": b"\x89PNG\r\n\x1a\nA", "lamps/Lamp_01": b"\x89PNG\r\n\x1a\nBB", "x": b"not a png"}
    assert write_thumbnails(tmp_path / THUMBNAILS_FILE, pngs) == 3
    with np.load(tmp_path / THUMBNAILS_FILE, allow_pickle=False) as z:  # plain arrays: no pickle needed
        assert list(z["names"]) == sorted(pngs)
    assert read_thumbnails(tmp_path) == {k: v for k, v in pngs.items() if k != "x"}  # only PNGs
    assert read_thumbnails(tmp_path / "older") == {} and read_thumbnails(None) == {}
    (tmp_path / THUMBNAILS_FILE).write_bytes(b"PK\x03\x04 damaged")
    assert read_thumbnails(tmp_path) == {}
    np.savez(tmp_path / THUMBNAILS_FILE, names=np.array(["a", "b"]), offsets=np.array([0, 5]),
             data=np.zeros(5, np.uint8))
    assert read_thumbnails(tmp_path) == {}  # offsets that do not fit the names


@pytest.mark.slow  # serves the tiny trained run
def test_stored_views_are_served_without_the_decoder(tmp_path: Path) -> None:
    run = support.fresh_run_copy(tmp_path / "run")
    library = support.workspace() / "library"  # the bundles the tiny run was trained on
    views = _views(library)
    stored = _starter_thumbnails(library, [n for n in views if n != "crate_green"])
    assert stored and "crate_green" not in stored
    write_thumbnails(run / THUMBNAILS_FILE, stored)

    engine = Engine.open(run)
    try:
        with Service(engine, port=0, advertise=False) as svc, httpx.Client(
                base_url=svc.url, headers=support.CLIENT_HEADERS, timeout=10) as http:
            # The decoder is busy (held here): a stored view comes all the same, byte for byte the bundle's.
            with engine.served.decoder_lock:
                for name in ("ball_red", "crate_blue"):
                    r = http.get(f"{P}/assets/{name}/thumbnail")
                    assert r.status_code == 200 and r.content == views[name]
                with pytest.raises(httpx.ReadTimeout):  # an asset without a stored view waits for the decoder
                    http.get(f"{P}/assets/crate_green/thumbnail", timeout=1.5)
            rendered = http.get(f"{P}/assets/crate_green/thumbnail")  # an older run's way: rendered once
            assert rendered.status_code == 200 and rendered.content.startswith(b"\x89PNG")
            assert rendered.content != views["crate_green"]
    finally:
        engine.close()


@pytest.mark.slow  # loads the starter model
def test_a_fresh_home_serves_the_starters_captured_views(tmp_path: Path) -> None:
    shipped = read_thumbnails(starter_run_dir())
    assert len(shipped) == starter_manifest()["thumbnails"]["assets"] == starter_manifest()["data"]["assets"], (
        "the starter model has no thumbnails: `asset2vec starter-model` adds them from the cached captures")
    cap = load_recipe()["capture"]
    cached = default_cache() / f"bundles-{cap['size']}px-{cap['samples']}spp-sample-seed0"
    if cached.is_dir():  # a source checkout that built the model: they are the captures' own views
        views = _views(cached)
        assert all(shipped[n] == views[n] for n in shipped)

    home = LibraryHome.at(tmp_path / "home")
    engine = Engine.open_home(home)
    try:
        assert (home.run_dir(engine.model_id) / THUMBNAILS_FILE).is_file()
        with engine.served.decoder_lock:  # never rendered: the decoder is held the whole time
            for name in ("chairs/Chair_00", "lamps/Lamp_03", next(iter(shipped))):
                assert engine.thumbnail(name) == shipped[name]
    finally:
        engine.close()


def test_a_built_model_without_thumbnails_gets_them_without_retraining(tmp_path: Path) -> None:
    out = tmp_path / "model"
    shutil.copytree(DEFAULT_OUT, out)
    (out / THUMBNAILS_FILE).unlink(missing_ok=True)
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    manifest.pop("thumbnails", None)
    (out / MANIFEST_FILE).write_text(json.dumps(manifest))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != MANIFEST_FILE}

    # A cache with the captures of two of its assets (synthetic views under the starter's names).
    cap = load_recipe()["capture"]
    bundles = tmp_path / "cache" / f"bundles-{cap['size']}px-{cap['samples']}spp-sample-seed0" / "sample"
    for name, kind in (("chairs/Chair_00", "crate"), ("lamps/Lamp_03", "pillar")):
        synthetic.write_bundle(bundles / name.replace("/", "__"), name, synthetic.scene(kind, "red"), 16)
    said: list[str] = []
    got = build_starter(out, cache=tmp_path / "cache", say=said.append)

    assert any("added the captured thumbnails of 2 assets" in s for s in said), said
    assert read_thumbnails(out) == _views(bundles)
    assert got["thumbnails"]["assets"] == 2 and json.loads((out / MANIFEST_FILE).read_text()) == got
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name not in (MANIFEST_FILE, THUMBNAILS_FILE)} \
        == before  # nothing retrained
    said.clear()
    build_starter(out, cache=tmp_path / "cache", say=said.append)  # up to date now: nothing more to add
    assert not any("added" in s for s in said)
