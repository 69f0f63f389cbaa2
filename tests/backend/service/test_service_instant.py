"""Instant embedding: a run with an encoder answers from it at once, then inversion refines and replaces the code.

Real Engine, catalogue and HTTP server on the tiny run of ``service_support``, with an encoder trained for
it in a few steps; the refinement runs as a job of the service's queue (or inline without one).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import pytest

from backend.library.catalogue import Catalogue, import_run
from backend.lifecycle.home import LibraryHome, install_run
from backend.service.engine import Engine
from backend.service.server import Service
from backend.service.uploads import parse_upload
from backend.training.encoder import encode_bundles
from backend.training.run import load_run
from shared.bundle import parse_archive
from tests.backend.service import service_support as support

pytestmark = pytest.mark.slow  # trains a model (or serves the tiny trained run)

with_encoder = support.run_with_encoder


class Followups:
    """Stands in for the service's queue: keeps the refinement jobs so a test runs them when it wants."""

    def __init__(self) -> None:
        self.jobs: list[tuple[str, Any]] = []

    def __call__(self, kind: str, fn: Any) -> str:
        self.jobs.append((kind, fn))
        return f"job-{len(self.jobs)}"

    def run(self, i: int = 0, progress: Any = None) -> dict[str, Any]:
        return self.jobs[i][1](progress or (lambda f, m: None), threading.Event()).to_json()


def embed(engine: Engine, data: bytes, followups: Followups | None = None) -> dict[str, Any]:
    """Embed an upload (validated once, as the app does); the answer as the wire's JSON."""
    return engine.embed(parse_upload(data), lambda f, m: None, threading.Event(), followups).to_json()


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    eng = Engine.open(with_encoder(tmp_path / "run"), invert_steps=support.INVERT_STEPS)
    yield eng
    eng.close()


def stored(engine: Engine, name: str) -> tuple[dict[str, Any], np.ndarray]:
    """The catalogue's code record and code ``[64]`` of ``name`` under the served model."""
    table = engine.catalogue.codes(engine.model_id)
    row = table.index_of(name)
    return engine.catalogue.code_info(name, engine.model_id), np.concatenate([table.shape[row], table.texture[row]])


def test_encoder_answer_is_stored_then_the_refinement_replaces_it(engine: Engine) -> None:
    followups = Followups()
    data = support.upload_bundle("pillar", "blue")
    assert engine.info().instant_embed is True

    first = embed(engine, data, followups)
    assert first["code_source"] == "encoder" and first["psnr"] is None and first["refine_job"] == "job-1"
    bundle, _ = parse_archive(data)
    shape, texture = encode_bundles(engine.run, [support.workspace() / "uploads" / "pillar_blue"])
    np.testing.assert_allclose(first["shape"], shape[0], atol=1e-5)  # the encoder's own code, nothing else
    np.testing.assert_allclose(first["texture"], texture[0], atol=1e-5)
    info, code = stored(engine, bundle.asset.name)
    assert info["source"] == "encoder" and info["psnr"] is None
    np.testing.assert_allclose(code, first["shape"] + first["texture"], atol=1e-6)
    assert set(first["predicted_tags"]) == {"ball", "crate"} and len(first["neighbours"]["both"]) == 8

    assert [k for k, _ in followups.jobs] == ["refine"]
    messages: list[str] = []
    refined = followups.run(0, lambda f, m: messages.append(m))
    assert refined["code_source"] == "inversion" and refined["refined_from"] == "encoder"
    assert refined["psnr"] is not None and refined["model_id"] == engine.model_id
    assert any("refining" in m for m in messages)
    steps = round(support.INVERT_STEPS / 3)  # it starts from the encoder's code: a third of the embed's steps
    assert any(f"step {steps}/{steps}," in m for m in messages), messages
    info, code = stored(engine, bundle.asset.name)
    assert info["source"] == "inversion" and info["psnr"] == pytest.approx(refined["psnr"], abs=1e-3)
    np.testing.assert_allclose(code, refined["shape"] + refined["texture"], atol=1e-6)
    assert not np.allclose(refined["shape"] + refined["texture"], first["shape"] + first["texture"], atol=1e-4)
    # Tags and neighbours were predicted again from the refined code, and stored.
    predicted = engine.catalogue.tags_of(bundle.asset.name, engine.model_id)["probabilities"]
    assert {t: round(p, 4) for t, p in predicted.items()} == refined["predicted_tags"]
    assert [n["name"] for n in engine.catalogue.neighbours_of(bundle.asset.name, engine.model_id, "both")] == \
        [n["name"] for n in refined["neighbours"]["both"]]
    assert engine.neighbours(bundle.asset.name, "both", 8).to_json()["neighbours"] == refined["neighbours"]["both"]

    again = followups.run(0)  # refined already: answers from the stored code, fits nothing, stores no code
    assert again["code_source"] == "inversion" and again["shape"] == refined["shape"]
    assert stored(engine, bundle.asset.name)[0] == info


def test_an_older_refinement_never_overwrites_a_newer_embed(engine: Engine) -> None:
    followups = Followups()
    data = support.upload_bundle("ball", "red")
    name = parse_archive(data)[0].asset.name
    embed(engine, data, followups)
    embed(engine, data, followups)  # embedded again (same content) before the first refinement ran
    second = followups.run(1)
    assert second["code_source"] == "inversion"
    after = stored(engine, name)
    first = followups.run(0)  # the same content is fitted already: its answer, nothing stored
    assert first["code_source"] == "inversion" and first["shape"] == second["shape"]
    assert stored(engine, name)[0] == after[0]
    np.testing.assert_array_equal(stored(engine, name)[1], after[1])

    # Embedded again with other content: the older refinement has nothing to refine.
    changed = support.tampered(support.upload_bundle("ball", "red"),
                               transforms_patch={"asset": {**parse_archive(data)[0].asset.__dict__,
                                                           "content_hash": "other"}})
    embed(engine, changed, followups)
    embed(engine, support.tampered(data, transforms_patch={"asset": {**parse_archive(data)[0].asset.__dict__,
                                                                     "content_hash": "newest"}}), followups)
    outdated = followups.run(2)
    assert outdated["dropped"] and "other content" in outdated["message"]
    assert stored(engine, name)[0]["source"] == "encoder"  # the newest embed's code, untouched
    assert followups.run(3)["code_source"] == "inversion"


def test_without_a_queue_the_refinement_runs_inline(engine: Engine) -> None:
    result = embed(engine, support.upload_bundle("pillar", "blue"))  # no followups queue
    assert result["code_source"] == "inversion" and result["refined_from"] == "encoder"
    assert "instant_seconds" in result and "refine_job" not in result
    assert stored(engine, result["name"])[0]["source"] == "inversion"


def test_no_instant_and_runs_without_an_encoder_embed_by_inversion(tmp_path: Path) -> None:
    off = Engine.open(with_encoder(tmp_path / "run"), invert_steps=support.INVERT_STEPS, instant=False)
    plain = Engine.open(support.fresh_run_copy(tmp_path / "plain"), invert_steps=support.INVERT_STEPS)
    try:
        for eng in (off, plain):
            followups = Followups()
            assert eng.info().instant_embed is False
            result = embed(eng, support.upload_bundle("pillar", "blue"), followups)
            assert result["code_source"] == "inversion" and result["psnr"] is not None
            assert "refine_job" not in result and not followups.jobs
            assert stored(eng, result["name"])[0]["source"] == "inversion"
    finally:
        off.close()
        plain.close()


def test_an_encoder_of_another_model_is_not_used(tmp_path: Path) -> None:
    run = with_encoder(tmp_path / "run")
    import torch

    state = torch.load(run / "encoder.pt", weights_only=True)
    state["model_id"] = "someone-elses-model"  # e.g. an encoder file copied from another run
    torch.save(state, run / "encoder.pt")
    eng = Engine.open(run, invert_steps=support.INVERT_STEPS)
    try:
        assert eng.info().instant_embed is False
        assert embed(eng, support.upload_bundle("pillar", "blue"))["code_source"] == "inversion"
    finally:
        eng.close()


def two_model_home(tmp_path: Path) -> tuple[LibraryHome, str, str]:
    """A library home with the tiny run (with encoder, active) and a second tiny run to switch to."""
    from backend.training.trainer import train

    home = LibraryHome.at(tmp_path / "home").create()
    first = with_encoder(tmp_path / "first")
    second = tmp_path / "second"
    train(support.workspace() / "library", second, preset="cpu-small", steps=2, show_progress=False,
          overrides={"image_size": support.IMAGE_SIZE, "rays_per_batch": 128, "checkpoint_every": 1000})
    ids = []
    for run_dir in (first, second):
        run = load_run(run_dir, device="cpu")
        install_run(home, run_dir, run.model_id, {"model_id": run.model_id, "generic": False})
        ids.append(run.model_id)
    with Catalogue(home.catalogue) as cat:
        import_run(cat, load_run(home.run_dir(ids[0]), device="cpu"))
    return home, ids[0], ids[1]


def test_a_switch_during_refinement_never_stores_its_code_under_the_wrong_model(tmp_path: Path) -> None:
    home, old, new = two_model_home(tmp_path)
    engine = Engine.open_home(home, invert_steps=support.INVERT_STEPS)
    try:
        assert engine.model_id == old and engine.info().instant_embed
        followups = Followups()
        data = support.upload_bundle("pillar", "blue")
        name = parse_archive(data)[0].asset.name
        assert embed(engine, data, followups)["code_source"] == "encoder"
        switched: list[Any] = []

        def switch_once(f: float, m: str) -> None:  # the switch lands while the old model is inverting
            if "fitting codes" in m and not switched:
                switched.append(engine.switch(new))

        result = followups.run(0, switch_once)
        assert switched and engine.model_id == new
        assert result["dropped"] and "switched" in result["message"] and result["model_id"] == old
        assert not engine.info().instant_embed  # the new model has no encoder
        with Catalogue(home.catalogue) as cat:
            assert cat.code_info(name, old)["source"] == "encoder"  # the refinement stored nothing
            assert cat.code_info(name, new)["source"] == "inversion"  # fitted by the switch, from the kept views
        # A refinement queued for the old model that starts after the switch does nothing either.
        assert embed(engine, data, followups)["code_source"] == "inversion"
        engine.switch(old)
        later = Followups()
        embed(engine, data, later)
        engine.switch(new)
        assert later.run(0)["dropped"]
        with Catalogue(home.catalogue) as cat:
            assert cat.code_info(name, old)["source"] == "encoder"
    finally:
        engine.close()


def wait_job(http: httpx.Client, job: str, timeout: float = 120) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status = http.get(f"/v1/jobs/{job}").json()
        if status["status"] in ("done", "failed", "cancelled"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job} still running after {timeout} s")


def test_encoder_and_refine_paths_over_http(engine: Engine) -> None:
    service = Service(engine, host="127.0.0.1", port=0, advertise=False).start_in_thread()
    try:
        with httpx.Client(base_url=service.url, timeout=60, headers=support.CLIENT_HEADERS) as http:
            assert http.get("/v1/info").json()["instant_embed"] is True
            data = support.upload_bundle("pillar", "blue")
            job = http.post("/v1/embed", content=data, headers={"Content-Type": "application/zip"}).json()["job"]
            assert wait_job(http, job)["status"] == "done"
            first = http.get(f"/v1/jobs/{job}/result").json()
            assert first["code_source"] == "encoder" and first["psnr"] is None and first["refine_job"]
            refine = first["refine_job"]
            status = wait_job(http, refine)
            assert status["status"] == "done" and status["kind"] == "refine"
            refined = http.get(f"/v1/jobs/{refine}/result").json()
            assert refined["code_source"] == "inversion" and refined["psnr"] is not None
            assert refined["shape"] != first["shape"]
            nb = http.get(f"/v1/assets/{quote(first['name'])}/neighbours", params={"k": 8}).json()
            assert [n["name"] for n in nb["neighbours"]] == [n["name"] for n in refined["neighbours"]["both"]]
            assert all(n["thumbnail_url"] for n in refined["neighbours"]["both"])
            assert engine.catalogue.code_info(first["name"], engine.model_id)["source"] == "inversion"

            # An upload waiting in the queue goes before a refinement; a cancelled refinement leaves the
            # encoder's code in place (accepted by the catalogue as it is).
            gates = [threading.Event(), threading.Event()]
            service.queue.submit("block", lambda p, c: {"waited": gates[0].wait(30)})
            job = http.post("/v1/embed", content=support.upload_bundle("ball", "red"),
                            headers={"Content-Type": "application/zip"}).json()["job"]
            service.queue.submit("block", lambda p, c: {"waited": gates[1].wait(30)})  # queued behind the embed
            gates[0].set()
            assert wait_job(http, job)["status"] == "done"
            second = http.get(f"/v1/jobs/{job}/result").json()
            assert http.get(f"/v1/jobs/{second['refine_job']}").json()["status"] == "queued"  # behind the block
            assert http.post(f"/v1/jobs/{second['refine_job']}/cancel").status_code == 200
            gates[1].set()
            assert wait_job(http, second["refine_job"])["status"] == "cancelled"
            assert engine.catalogue.code_info(second["name"], engine.model_id)["source"] == "encoder"
    finally:
        service.stop()
