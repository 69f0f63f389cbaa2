"""The "Library Model" sub-panel: the real draw() on real bpy (recorded with bench/panel_preview.py's layout
recorder), its operators' errors, and the model lifecycle against a live backend on loopback: a background job
followed from a thread, Build Model from Library started and cancelled, Restore Previous Model switching back."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from backend.service.engine import Engine
from backend.service.server import Service
from bench import panel_preview
from blender_addon import backend_check, library_job, library_ui, session
from shared import api
from shared.client import Client
from tests.blender_addon.addon_support import configure, support

pytestmark = pytest.mark.slow  # trains a model (or serves the tiny trained run)


URL = "http://127.0.0.1:8765"


@pytest.fixture
def addon(blender):
    import blender_addon

    blender_addon.register()
    yield blender
    blender_addon.unregister()  # closes the session: its backend info goes with it


def _draw(bpy: Any) -> Any:
    rec = panel_preview.Recorder()
    library_ui.ASSET2VEC_PT_library.draw(SimpleNamespace(layout=rec), bpy.context)
    return rec


def _buttons(rec: Any) -> dict[str, Any]:
    """``{operator idname: (label, properties)}`` of the drawn buttons."""
    return {it[3]: (it[1], it[4]) for it in rec.flat() if it[0] == "button"}


def _fake_info(**extra: Any) -> None:
    session.get().set_backend_info(api.ServerInfo.from_json({"model_id": "m-1", "device": "cpu", "assets": 8, **extra}),
                                   URL)


# -- drawing ------------------------------------------------------------------------------------------------


def test_panel_is_registered_under_the_main_panel(addon):
    bpy = addon
    assert library_ui.ASSET2VEC_PT_library.bl_parent_id == "ASSET2VEC_PT_main"
    assert hasattr(bpy.types, "ASSET2VEC_PT_library") and hasattr(bpy.context.window_manager, "asset2vec_library")
    assert bpy.context.window_manager.asset2vec_library.bl_rna.properties["folder"].subtype == "DIR_PATH"


def test_panel_before_the_backend_is_checked(addon):
    configure(URL)
    session.get().set_backend_info(None)
    rec = _draw(addon)
    assert "Backend not checked yet" in rec.texts()
    buttons = _buttons(rec)
    assert "asset2vec.library_refresh" in buttons and "asset2vec.library_build" in buttons
    assert "asset2vec.library_retrain" not in buttons and "asset2vec.library_restore" not in buttons


def test_panel_with_the_generic_starter_model_explains_how_to_build_one(addon):
    configure(URL)
    _fake_info(generic=True, model={"model_id": "starter-1", "created": "2025-03-01T10:20:30", "info": {}},
               previous_model=None, retrain_advice=None, background=None)
    rec = _draw(addon)
    texts = rec.texts()
    assert texts[0] == "Model starter-1"
    assert "Created 2025-03-01 10:20" in texts and not any(t.startswith("Trained on") for t in texts)
    assert "Generic starter model: build one from your own library." in " ".join(texts)
    assert ("field", "Library Folder", "") in rec.flat()
    buttons = _buttons(rec)
    assert buttons["asset2vec.library_build"][0] == "Build Model from Library"
    assert "asset2vec.library_retrain" in buttons and "asset2vec.library_restore" not in buttons


def test_panel_with_a_trained_model_offers_restore_and_shows_the_advice(addon):
    configure(URL)
    advice = "New assets fit this model worse than its library (PSNR 18.0 vs 24.5 dB): retraining would help."
    _fake_info(generic=False, model={"model_id": "lib-2", "created": "2023-11-14T22:13:20+00:00", "info": {"trained_on": 120}},
               previous_model="starter-1", retrain_advice=advice, background=None)
    rec = _draw(addon)
    texts = rec.texts()
    assert texts[0] == "Model lib-2" and "Trained on 120 assets" in texts
    assert f"Created {time.strftime('%Y-%m-%d %H:%M', time.localtime(1_700_000_000))}" in texts
    assert not any("Generic" in t for t in texts)
    assert " ".join(texts).count("retraining would help") == 1
    label, props = _buttons(rec)["asset2vec.library_restore"]
    assert label == "Restore Previous Model (starter-1)" and props.model_id == "starter-1"


def test_panel_while_the_backend_builds_a_model_shows_progress_and_cancel(addon):
    configure(URL)
    _fake_info(generic=True, previous_model=None, background={
        "id": "job-9", "kind": "index", "status": "running", "progress": 0.42,
        "message": "training the decoder: step 420/1000, ETA 3 min 10 s"})
    rec = _draw(addon)
    assert ("progress", 0.42, "42%") in rec.flat()
    assert "training the decoder: step 420/1000, ETA 3 min 10 s" in " ".join(rec.texts())
    buttons = _buttons(rec)
    assert "asset2vec.library_cancel" in buttons
    assert "asset2vec.library_build" not in buttons and "asset2vec.library_retrain" not in buttons


# -- operator errors (no backend) ---------------------------------------------------------------------------


def test_build_without_a_folder_or_backend_reports_clear_errors(addon, tmp_path):
    bpy = addon
    url = f"http://127.0.0.1:{support.free_port()}"
    configure(url)
    bpy.context.window_manager.asset2vec_library.folder = ""
    with pytest.raises(RuntimeError, match="pick the library folder first"):
        bpy.ops.asset2vec.library_build()
    assert session.get().status["library"][0] == "ERROR" and library_ui.current() is None

    # Build and Retrain ask the backend from the task's thread: the operator returns at once, the failure reaches
    # the panel's status line.
    bpy.context.window_manager.asset2vec_library.folder = str(tmp_path)
    for op in (bpy.ops.asset2vec.library_build, bpy.ops.asset2vec.library_retrain):
        t0 = time.monotonic()
        assert op() == {"FINISHED"}
        assert time.monotonic() - t0 < 1.0
        task = library_ui.finish(timeout=30)
        assert task.state == library_job.FAILED and task.message.startswith("no Asset2Vec backend is running")
        assert session.get().status["library"] == ("ERROR", task.message)
    assert bpy.ops.asset2vec.library_cancel() == {"CANCELLED"}  # nothing to cancel: a warning, no error

    # Restore runs in the task thread; its failure reaches the panel's status line.
    assert bpy.ops.asset2vec.library_restore(model_id="old") == {"FINISHED"}
    task = library_ui.finish(timeout=30)
    assert task is not None and task.state == library_job.FAILED
    assert session.get().status["library"] == ("ERROR", task.message) and "no Asset2Vec backend" in task.message
    rec = _draw(bpy)
    assert any(it[0] == "label" and it[2] == "ERROR" and it[1].startswith("no Asset2Vec backend")
               for it in rec.flat())


# -- against a live backend ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A backend serving a library home: the generic starter model, plus the tiny trained run installed beside it."""
    from backend.lifecycle.home import LibraryHome, install_run
    from backend.training.run import load_run

    home = LibraryHome.at(tmp_path_factory.mktemp("library_ui") / "home")
    eng = Engine.open_home(home, invert_steps=support.INVERT_STEPS)
    tiny = load_run(support.trained_run(), device="cpu")
    install_run(home, tiny.run_dir, tiny.model_id, {"model_id": tiny.model_id, "trained_on": len(tiny.names)})
    eng.tiny_model_id = tiny.model_id  # type: ignore[attr-defined]
    # The tiny run's 8 bundles stored in the home, as embedded assets would be (enough for Retrain to start).
    for bundle in sorted((support.workspace() / "library").glob("*/transforms.json")):
        shutil.copytree(bundle.parent, home.bundles / bundle.parent.name)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def backend(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The engine served on 127.0.0.1 with pytest's temporary folder as its library root (a backend indexes only
    libraries under the roots it was started with: ``asset2vec serve --library-root DIR``)."""
    svc = Service(engine, port=0, advertise=False, library_roots=[tmp_path_factory.getbasetemp()]).start_in_thread()
    yield svc
    svc.stop()


def _wait(condition: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"{what} within {timeout:.0f} s"
        time.sleep(0.1)


def test_a_backend_job_is_followed_from_a_thread_and_its_outcome_shown(addon, backend, engine):
    bpy = addon
    configure(backend.url)
    job_id = Client(backend.url).start_embed(support.upload_bundle())  # a real job of the backend
    task = library_ui._follow("follow", bpy.context, job_id=job_id)
    assert session.timer_registered()
    assert library_ui.finish(timeout=60) is task
    assert task.state == library_job.DONE and task.progress == 1.0, task.message
    assert task.message == f"the backend's background job finished: now serving model {engine.model_id}"
    assert session.get().status["library"] == ("INFO", task.message)
    assert session.get().backend_info.model_id == engine.model_id and session.get().backend_url == backend.url
    assert _draw(bpy).texts()[0] == f"Model {engine.model_id}"
    assert session.get().tick() is None  # the timer stops once the task is over


def test_a_lost_job_fails_with_a_message_instead_of_hanging(addon, backend, monkeypatch):
    configure(backend.url)
    monkeypatch.setattr(library_job, "POLL_S", 0.05)
    task = library_ui._follow("follow", addon.context, job_id="no-such-job")
    assert library_ui.finish(timeout=30) is task and task.state == library_job.FAILED
    assert "lost contact with the backend" in task.message and "no job with id" in task.message


def test_restore_previous_model_switches_the_backend_back(addon, backend, engine):
    bpy = addon
    configure(backend.url)
    starter, tiny = engine.model_id, engine.tiny_model_id
    assert engine.generic
    # Another model serves now (switched through the API, as another artist or the CLI could).
    client = Client(backend.url)
    assert client.restore_model(tiny).model_id == tiny and engine.model_id == tiny
    listed = client.models()
    assert listed.active == tiny and {starter, tiny} <= {m.model_id for m in listed.models}

    assert bpy.ops.asset2vec.library_refresh() == {"FINISHED"}  # asks in the background
    assert session.get().pump(backend_check.SLOT, timeout=30).state == library_job.DONE
    rec = _draw(bpy)
    info = session.get().backend_info
    assert info.model_id == tiny and not info.generic and info.previous_model == starter
    trained_on = info.model.info.get("trained_on")
    assert rec.texts()[0] == f"Model {tiny}"
    assert (f"Trained on {trained_on} assets" if trained_on else f"{info.assets} assets in its catalogue"
            ) in rec.texts()
    label, props = _buttons(rec)["asset2vec.library_restore"]
    assert label == f"Restore Previous Model ({starter})" and props.model_id == starter

    assert bpy.ops.asset2vec.library_restore(model_id=props.model_id) == {"FINISHED"}
    task = library_ui.finish(timeout=120)
    assert task is not None and task.kind == "restore" and task.state == library_job.DONE, task.message
    assert engine.model_id == starter and engine.generic
    assert session.get().status["library"] == ("INFO", f"restored model {starter}")
    info = session.get().backend_info
    assert info.model_id == starter and info.previous_model == tiny
    texts = " ".join(_draw(bpy).texts())
    assert "Generic starter model: build one from your own library." in texts
    assert f"Restore Previous Model ({tiny})" in texts


def test_build_model_from_library_starts_a_background_job_that_can_be_cancelled(addon, backend, engine, tmp_path):
    from tests.blender_addon.blender_helpers import box

    bpy = addon
    configure(backend.url)
    serving = engine.model_id
    library = tmp_path / "library"
    library.mkdir()
    box("Crate").asset_mark()
    bpy.ops.wm.save_as_mainfile(filepath=str(library / "crates.blend"))
    settings = bpy.context.window_manager.asset2vec_library

    settings.folder = str(tmp_path / "missing")  # the backend checks the folder on its own disk
    assert bpy.ops.asset2vec.library_build() == {"FINISHED"}
    task = library_ui.finish(timeout=30)
    assert task.state == library_job.FAILED and "no such folder under the library roots" in task.message
    assert task.job_id is None  # nothing was started

    settings.folder = str(library)
    assert bpy.ops.asset2vec.library_build() == {"FINISHED"}
    task = library_ui.current()
    assert task is not None and task.kind == "index"
    _wait(lambda: task.job_id is not None, 30, "the backend accepted the build")
    _wait(lambda: task.message.startswith("["), 120, "the backend's index process reported its first stage")
    rec = _draw(bpy)  # progress with the backend's stage, Cancel, no second Build
    assert any(it[0] == "progress" for it in rec.flat()) and "asset2vec.library_cancel" in _buttons(rec)
    assert "asset2vec.library_build" not in _buttons(rec)
    with pytest.raises(RuntimeError, match="still going"):
        bpy.ops.asset2vec.library_retrain()

    assert bpy.ops.asset2vec.library_cancel() == {"FINISHED"}
    assert library_ui.finish(timeout=120) is task
    assert task.state == library_job.CANCELLED, task.message
    assert session.get().status["library"] == ("INFO", f"cancelled building the model from the library: model {serving} "
                                              f"keeps serving")
    assert engine.model_id == serving and Client(backend.url).job(task.job_id).status == "cancelled"
    assert "asset2vec.library_build" in _buttons(_draw(bpy))

    # Retrain: the same kind of background job (on every stored asset), cancelled the same way.
    assert bpy.ops.asset2vec.library_retrain() == {"FINISHED"}
    task = library_ui.current()
    assert task is not None and task.kind == "retrain"
    _wait(lambda: task.job_id is not None, 30, "the backend accepted the retrain")
    assert Client(backend.url).job(task.job_id).kind == "train"
    assert bpy.ops.asset2vec.library_cancel() == {"FINISHED"}
    assert library_ui.finish(timeout=120) is task and task.state == library_job.CANCELLED, task.message
    assert engine.model_id == serving

    # A build started elsewhere (the CLI, another Blender) shows after Check Backend and can be cancelled here.
    job_id = Client(backend.url).start_index(str(library))
    assert bpy.ops.asset2vec.check_backend() == {"FINISHED"}
    assert session.get().pump(backend_check.SLOT, timeout=30).state == library_job.DONE
    assert session.get().backend_info.background.id == job_id
    rec = _draw(bpy)
    assert any(it[0] == "progress" for it in rec.flat()) and "asset2vec.library_cancel" in _buttons(rec)
    assert bpy.ops.asset2vec.library_cancel() == {"FINISHED"}
    task = library_ui.finish(timeout=120)
    assert task is not None and task.kind == "follow" and task.job_id == job_id
    assert task.state == library_job.CANCELLED and engine.model_id == serving
