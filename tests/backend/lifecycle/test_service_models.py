"""A backend serving a library home: retrain in the background, atomic switch, restore, new uploads kept."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from backend.cli import main
from backend.features.library import both_space
from backend.library.catalogue import Catalogue
from backend.library.similarity import SimilarityIndex
from backend.lifecycle.home import LibraryHome
from backend.service.engine import Engine
from backend.service.server import Service
from backend.service.uploads import parse_upload
from shared import api
from shared import bundle as B
from shared.naming import safe_folder_name

pytestmark = pytest.mark.slow  # trains a model (or serves the tiny trained run)

#: What the request policy (issue 18) asks of every POST: the add-on and CLI send it too.
CLIENT_HEADERS = {api.CLIENT_HEADER: api.CLIENT_HEADER_VALUE}


def home_copy(indexed: dict[str, Any], dest: Path) -> LibraryHome:
    shutil.copytree(indexed["home"].root, dest)
    return LibraryHome.at(dest)


def expected_neighbours(home: LibraryHome, model_id: str, name: str, k: int) -> list[str]:
    with Catalogue(home.catalogue) as cat:  # "both" on the descriptor, as served, when every asset has its feature
        table = cat.codes(model_id)
        index = SimilarityIndex(table, "both", **both_space(cat, table))
    return [n.name for n in index.similar(name, k, exclude_self=True)]


def wait_job(http: httpx.Client, job: str, timeout: float = 600) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status = http.get(f"/v1/jobs/{job}").json()
        if status["status"] in ("done", "failed", "cancelled"):
            return status
        time.sleep(0.5)
    raise AssertionError(f"job {job} still running after {timeout} s")


def test_retrain_switches_atomically_while_queries_keep_answering(indexed: dict[str, Any], tmp_path: Path) -> None:
    home = home_copy(indexed, tmp_path / "home")
    engine = Engine.open_home(home, invert_steps=5)
    old = engine.model_id
    service = Service(engine, host="127.0.0.1", port=0, advertise=False).start_in_thread()
    name = engine.served.codes().names[0]  # any catalogued asset
    answers: list[tuple[str, list[str]]] = []
    errors: list[str] = []
    stop = threading.Event()

    def ask() -> None:
        with httpx.Client(base_url=service.url, headers=CLIENT_HEADERS, timeout=30) as c:
            while not stop.is_set():
                r = c.get(f"/v1/assets/{quote(name)}/neighbours", params={"space": "both", "k": 5})
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text}")
                else:
                    body = r.json()
                    answers.append((body["model_id"], [n["name"] for n in body["neighbours"]]))
                time.sleep(0.05)

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        with httpx.Client(base_url=service.url, headers=CLIENT_HEADERS, timeout=60) as http:
            r = http.post("/v1/train", json={"what": "decoder", "steps": 20})
            assert r.status_code == 202, r.text
            job = r.json()["job"]
            info = http.get("/v1/info").json()
            assert info["background"]["id"] == job and info["model_id"] == old  # the old model serves meanwhile
            again = http.post("/v1/train", json={"what": "decoder", "steps": 20})
            assert again.status_code == 409 and again.json()["code"] == "busy"  # one build at a time
            status = wait_job(http, job)
            assert status["status"] == "done", status
            result = http.get(f"/v1/jobs/{job}/result").json()
            time.sleep(0.5)  # a few answers from the new model
            info = http.get("/v1/info").json()
            new = result["model_id"]
            assert new != old and info["model_id"] == new and info["previous_model"] == old
            assert info["generic"] is False

            stop.set()
            asker.join()
            assert not errors
            by_model = {m for m, _ in answers}
            assert by_model == {old, new}, by_model  # answers before and after the switch...
            want = {m: expected_neighbours(home, m, name, 5) for m in (old, new)}
            assert all(names == want[m] for m, names in answers)  # ...each entirely from one model

            # Restore the previous model, then switch forward again through the models list.
            r = http.post("/v1/models/restore", json={})
            assert r.status_code == 200 and r.json()["model_id"] == old
            listed = http.get("/v1/models").json()
            assert listed["active"] == old and listed["previous"] == new
            assert {m["model_id"] for m in listed["models"]} == {old, new}
            assert http.post("/v1/models/restore", json={"model_id": "nope"}).status_code == 404
    finally:
        stop.set()
        asker.join()
        service.stop()
        engine.close()
    with Catalogue(home.catalogue) as cat:  # the switch is persistent: a restarted backend serves the same model
        assert cat.active_model() == old


def test_assets_embedded_during_a_rebuild_move_to_the_new_model(indexed: dict[str, Any], tmp_path: Path) -> None:
    home = home_copy(indexed, tmp_path / "home")
    # A new model built but not switched to (what the background job does before the switch).
    assert main(["index", "--retrain", "--home", str(home.root), "--steps", "10", "--no-activate", "--no-explore",
                 "--json"]) == 0
    engine = Engine.open_home(home, invert_steps=5)
    old = engine.model_id
    new = next(m for m in home.model_ids() if m != old)
    try:
        # An upload the new model never trained on: a copy of a stored asset under another name.
        src = next(home.bundles.iterdir())
        copy = tmp_path / "upload"
        shutil.copytree(src, copy)
        info = B.read_bundle(copy).asset
        renamed = B.AssetInfo(**{**info.__dict__, "name": "uploads/Lamp_copy", "tags": ["lamp"]})
        B.write_transforms(copy, B.read_bundle(copy).image_size, renamed)
        archive = tmp_path / "upload.zip"
        B.write_archive(B.read_bundle(copy), archive)
        out = engine.embed(parse_upload(archive.read_bytes()), lambda f, m: None, threading.Event())
        assert out.model_id == old
        assert (home.bundles / safe_folder_name("uploads/Lamp_copy") / "transforms.json").is_file()  # kept
        engine.switch(new)
        assert engine.model_id == new
        with Catalogue(home.catalogue) as cat:
            assert "uploads/Lamp_copy" in cat.codes(new).names  # fitted to the new model before the switch
            assert "lamp" in cat.tags_of("uploads/Lamp_copy")["artist"]
        assert engine.neighbours("uploads/Lamp_copy", "both", 3).model_id == new
    finally:
        engine.close()


def test_a_home_without_a_model_serves_the_generic_starter(tmp_path: Path) -> None:
    from backend.lifecycle.starter import starter_run_dir

    try:
        starter_run_dir()
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"the starter model is not built ({e}); `python build.py test` builds it first")
    home = LibraryHome.at(tmp_path / "fresh")
    engine = Engine.open_home(home)
    try:
        info = engine.info()
        assert info.generic is True and info.assets > 0 and info.tags
        assert info.model is not None and info.model.info["generic"] is True
        assert home.model_ids() == [engine.model_id]
    finally:
        engine.close()
    # The second start finds the installed starter and does not install it again.
    engine = Engine.open_home(home)
    assert engine.model_id == home.model_ids()[0]
    engine.close()

