"""Embed in Blender, end to end: the real add-on (registered in bpy) against a live backend on loopback.

Capture with Cycles (32 px, 4 samples) → upload → inversion on the tiny trained run → tags and
neighbours written into the .blend → save, reopen, review, remove, append a similar asset.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from blender_addon import embed_job, session, writeback
from shared import bundle
from shared import metadata as M
from tests.blender_addon.addon_support import configure, run_embed
from tests.blender_addon.blender_helpers import box

pytestmark = pytest.mark.slow  # renders with Cycles; serves the tiny trained run


def _select(bpy, obj) -> None:
    bpy.context.view_layer.objects.active = obj
    bpy.context.scene.asset2vec.capture_target = "OBJECT"


def test_embed_writes_tags_and_neighbours_saves_reopens_removes_and_appends(addon, backend, engine, tmp_path):
    bpy = addon
    configure(backend.url)
    crate = box("Crate", size=(0.6, 0.4, 0.4), color=(0.1, 0.3, 0.9))
    crate.asset_mark()
    crate.asset_data.tags.new("mine")
    crate.asset_data.description = "artist's description"
    (tmp_path / "blender_assets.cats.txt").write_text("VERSION 1\n")  # a library root: names are relative to it
    lib = tmp_path / "lib.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(lib))
    _select(bpy, crate)

    job = run_embed(bpy, save_after=True)
    assert job.state == embed_job.DONE, job.message
    assert "embedded 'Crate'" in job.message and "saved lib.blend" in job.message
    assert (tmp_path / "lib.blend1").is_file()  # Blender's own save: the previous version is kept as a backup
    assert session.get().status["embed"] == ("INFO", job.message)
    assert session.get().backend_info.model_id == engine.model_id

    # Reopen the saved file: everything is in it.
    bpy.ops.wm.open_mainfile(filepath=str(lib))
    crate = bpy.data.objects["Crate"]
    data = writeback.read_metadata(crate)
    assert data[M.MODEL_ID] == engine.model_id and data[M.ASSET_NAME] == "lib/Crate"  # unique across files
    assert len(data[M.CODE_SHAPE]) == 32 and len(data[M.CODE_TEXTURE]) == 32
    assert data[M.CONTENT_HASH] and data[M.TIMESTAMP]
    predicted = data[M.PREDICTED_TAGS]
    assert predicted and set(predicted) <= set(engine.info().tags)
    expected_added = {t for t, p in predicted.items() if p >= 0.5 and t != "mine"}
    assert set(data[M.ADDED_TAGS]) == expected_added
    assert set(writeback.asset_tags(crate)) == {"mine"} | expected_added
    assert crate.asset_data.description == "artist's description"
    nbs = data[M.NEIGHBOURS]
    assert {n["space"] for n in nbs} == {"shape", "texture", "both"}
    assert all(n["name"] != "lib/Crate" for n in nbs) and len({n["name"] for n in nbs}) >= 8  # the 8 training assets
    for space in ("shape", "texture", "both"):
        d = [n["distance"] for n in writeback.neighbours(crate, space)]
        assert d == sorted(d)
    session.get().pump_thumbnails()  # fetched after the answer was written (see the test below)
    for name in {n["name"] for n in nbs}:  # thumbnails were fetched for the Similar panel
        assert session.get().thumbnails.path(name).read_bytes().startswith(b"\x89PNG")
        assert session.get().thumbnails.icon_id(name) >= 0

    # "Remove predicted tags" restores the artist's tags exactly.
    _select(bpy, crate)
    assert bpy.ops.asset2vec.remove_predicted_tags() == {"FINISHED"}
    assert writeback.asset_tags(crate) == ["mine"]

    # A new file: embed a stool, and append the crate, which the backend now suggests from lib.blend.
    bpy.ops.wm.read_homefile(use_empty=True)
    configure(backend.url)
    stool = box("Stool", size=(0.4, 0.4, 0.5), color=(0.8, 0.6, 0.2))
    _select(bpy, stool)
    job = run_embed(bpy, mark_as_asset=True)
    assert job.state == embed_job.DONE, job.message
    assert stool.asset_data is not None and "marked it as an asset" in job.message
    crate_nb = next(n for n in writeback.neighbours(stool, "both") if n["name"] == "lib/Crate")
    assert Path(crate_nb["file"]) == lib and crate_nb["asset_name"] == "Crate"
    assert bpy.ops.asset2vec.append_neighbour(filepath=crate_nb["file"], asset_name=crate_nb["asset_name"]) == {
        "FINISHED"}
    appended = bpy.data.objects["Crate"]
    assert appended.name in bpy.context.scene.objects and appended.library is None
    assert writeback.read_metadata(appended)[M.MODEL_ID] == engine.model_id  # its metadata came along


class _HeldThumbnails:
    """The engine's own thumbnails behind a gate: each request waits until the test opens it (a backend whose
    thumbnail endpoint is slow, e.g. rendering through its decoder), then answers or fails with a 404."""

    def __init__(self, inner) -> None:
        self.inner, self.gate, self.asked, self.fail = inner, threading.Event(), threading.Event(), False

    def thumbnail(self, name: str) -> bytes:
        from backend.service.errors import NotFound

        self.asked.set()
        if not self.gate.wait(60):
            raise TimeoutError("the test never opened the gate")
        if self.fail:
            raise NotFound(f"{name!r} has no thumbnail")
        return self.inner.thumbnail(name)


def test_tags_are_written_before_the_thumbnails_come(addon, backend, engine, monkeypatch):
    """Issue 19: the answer (tags, neighbours, preview) is written as soon as the backend answers; the neighbours'
    thumbnails follow in the background, and one that cannot be fetched never fails the embed."""
    bpy = addon
    configure(backend.url)
    held = _HeldThumbnails(engine.thumbnails)
    monkeypatch.setattr(engine, "thumbnails", held)
    vase = box("Vase", size=(0.3, 0.3, 0.6), color=(0.2, 0.7, 0.3))
    vase.asset_mark()
    _select(bpy, vase)
    sess = session.get()

    job = run_embed(bpy)
    assert job.state == embed_job.DONE, job.message
    data = writeback.read_metadata(vase)
    names = {n["name"] for n in data[M.NEIGHBOURS]}
    assert data[M.PREDICTED_TAGS] and names  # written while every thumbnail request still waits
    assert vase.preview is not None and vase.preview.image_size[0] > 0  # the captured view: no download needed
    assert held.asked.wait(10), "the thumbnails were not asked for"
    fetch = sess.fetches[-1]
    assert fetch.running and not any(sess.thumbnails.path(n).is_file() for n in names)
    assert sess.status["embed"] == ("INFO", job.message)

    held.gate.set()  # the thumbnails come: the Similar list fills in
    sess.pump_thumbnails()
    assert not sess.fetches and fetch.fetched == len(names)
    assert all(sess.thumbnails.path(n).read_bytes().startswith(b"\x89PNG") for n in names)

    # A backend that has no thumbnail to give: the embed is done all the same, its status line untouched.
    for png in sess.thumbnails.folder.glob("*.png"):
        png.unlink()
    held.fail = True
    job = run_embed(bpy)
    assert job.state == embed_job.DONE, job.message
    sess.pump_thumbnails()
    assert not any(sess.thumbnails.path(n["name"]).is_file() for n in writeback.read_metadata(vase)[M.NEIGHBOURS])
    assert sess.status["embed"] == ("INFO", job.message)


def test_family_embed_records_members(addon, backend):
    bpy = addon
    configure(backend.url)
    obj = box("Shelf", size=(0.8, 0.3, 1.2))
    obj[f"{M.FAMILY_PARAM_PREFIX}width"] = 0.8
    obj.id_properties_ui(f"{M.FAMILY_PARAM_PREFIX}width").update(min=0.4, max=1.6)
    _select(bpy, obj)
    job = run_embed(bpy, mode="FAMILY", variants=2)
    assert job.state == embed_job.DONE, job.message
    data = writeback.read_metadata(obj)
    members = data[M.FAMILY_MEMBERS]
    assert [m["name"] for m in members] == ["unsaved/Shelf__v000", "unsaved/Shelf__v001"]
    assert [m["parameters"][f"{M.FAMILY_PARAM_PREFIX}width"] for m in members] == pytest.approx([0.4, 1.6])
    mean = [(a + b) / 2 for a, b in zip(members[0]["code_shape"], members[1]["code_shape"], strict=True)]
    assert data[M.CODE_SHAPE] == pytest.approx(mean, abs=1e-5)
    assert obj[f"{M.FAMILY_PARAM_PREFIX}width"] == pytest.approx(0.8)  # restored after sampling


def test_cancel_writes_nothing(addon, backend):
    bpy = addon
    configure(backend.url)
    obj = box("Lamp")
    _select(bpy, obj)
    assert bpy.ops.asset2vec.embed() == {"FINISHED"}
    assert embed_job.current() is not None and embed_job.current().state == embed_job.RUNNING
    assert bpy.ops.asset2vec.embed_cancel() == {"FINISHED"}
    job = embed_job.pump(timeout=60)
    assert job is not None and job.state == embed_job.CANCELLED and "nothing was written" in job.message
    assert writeback.read_metadata(obj) == {}
    assert bpy.ops.asset2vec.embed_cancel() == {"CANCELLED"}  # a warning: nothing left to cancel


def test_closing_a_waiting_embed_wakes_its_worker(addon, backend):
    """Unregister closes the tasks: a worker waiting for the next capture must end, not hang on its queue."""
    configure(backend.url)
    obj = box("Waiting")
    job = embed_job.start(obj, embed_job.Options(url=backend.url, size=32, samples=4), first_step=False)
    deadline = time.monotonic() + 30
    while job.info is None and job.worker_alive and time.monotonic() < deadline:
        time.sleep(0.02)  # the worker checks the backend, then waits for the first capture
    assert job.info is not None and job.worker_alive
    job.close()
    assert job.join(5), "the worker still waits for a capture"
    assert job.pump(timeout=10).state == embed_job.CANCELLED and writeback.read_metadata(obj) == {}


def test_capture_error_is_reported(addon, backend):
    bpy = addon
    configure(backend.url)
    empty_mesh = bpy.data.objects.new("Nothing", bpy.data.meshes.new("Nothing"))
    bpy.context.scene.collection.objects.link(empty_mesh)
    _select(bpy, empty_mesh)
    with pytest.raises(RuntimeError, match="no renderable geometry"):
        bpy.ops.asset2vec.embed()
    level, message = session.get().status["embed"]
    assert level == "ERROR" and "nothing to capture" in message
    bpy.context.view_layer.objects.active = None
    with pytest.raises(RuntimeError, match="select an object"):
        bpy.ops.asset2vec.embed()


def test_append_and_link_from_a_blend_and_missing_file(addon, tmp_path):
    bpy = addon
    chair = box("Chair", link=False)
    coll = bpy.data.collections.new("DiningSet")
    coll.objects.link(box("Table", link=False))
    lib = tmp_path / "furniture.blend"
    bpy.data.libraries.write(str(lib), {chair, coll})
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene

    assert bpy.ops.asset2vec.append_neighbour(filepath=str(lib), asset_name="Chair") == {"FINISHED"}
    assert bpy.data.objects["Chair"].library is None and "Chair" in scene.objects
    assert bpy.ops.asset2vec.append_neighbour(filepath=str(lib), asset_name="DiningSet", link=True) == {"FINISHED"}
    linked = bpy.data.collections["DiningSet"]
    assert linked.library is not None and any(o.instance_collection == linked for o in scene.objects)

    with pytest.raises(RuntimeError, match="is missing"):
        bpy.ops.asset2vec.append_neighbour(filepath=str(tmp_path / "moved.blend"), asset_name="Chair")
    with pytest.raises(RuntimeError, match="no object or collection named 'Sofa'"):
        bpy.ops.asset2vec.append_neighbour(filepath=str(lib), asset_name="Sofa")
    with pytest.raises(RuntimeError, match="no source .blend"):
        bpy.ops.asset2vec.append_neighbour(filepath="", asset_name="Chair")


def test_review_operators_on_embedded_asset(addon, backend):
    bpy = addon
    configure(backend.url)
    obj = box("Crate2", color=(0.9, 0.1, 0.1))
    obj.asset_mark()
    _select(bpy, obj)
    job = run_embed(bpy, auto_accept=False)
    assert job.state == embed_job.DONE, job.message
    assert writeback.asset_tags(obj) == []
    tag = max(writeback.read_metadata(obj)[M.PREDICTED_TAGS].items(), key=lambda kv: kv[1])[0]
    assert bpy.ops.asset2vec.tag_accept(tag=tag) == {"FINISHED"} and writeback.asset_tags(obj) == [tag]
    assert bpy.ops.asset2vec.tag_reject(tag=tag) == {"FINISHED"} and writeback.asset_tags(obj) == []
    assert tag in writeback.read_metadata(obj)[M.REJECTED_TAGS]
    assert json.loads(obj[M.NAMESPACE][M.NEIGHBOURS])  # stored as a JSON string, as the metadata keys say


def test_collection_embed_and_a_file_opened_meanwhile(addon, backend, tmp_path):
    bpy = addon
    configure(backend.url)
    coll = bpy.data.collections.new("DiningSet")
    bpy.context.scene.collection.children.link(coll)
    coll.objects.link(box("Table", size=(1.0, 0.6, 0.05), location=(0, 0, 0.7), link=False))
    coll.objects.link(box("Bench", size=(1.0, 0.3, 0.4), location=(0, 0.6, 0.2), link=False))
    bpy.context.view_layer.active_layer_collection = bpy.context.view_layer.layer_collection.children["DiningSet"]
    bpy.context.scene.asset2vec.capture_target = "COLLECTION"
    job = run_embed(bpy, mark_as_asset=True)
    assert job.state == embed_job.DONE, job.message
    assert coll.asset_data is not None and writeback.read_metadata(coll)[M.ASSET_NAME] == "unsaved/DiningSet"

    # The artist opens another file (with an object of the same name) while an embed runs: nothing is written.
    vase = box("Vase")
    _select(bpy, vase)
    other, this = tmp_path / "other.blend", tmp_path / "this.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(other))
    bpy.ops.wm.save_as_mainfile(filepath=str(this))
    assert bpy.ops.asset2vec.embed() == {"FINISHED"}
    bpy.ops.wm.open_mainfile(filepath=str(other))
    job = embed_job.pump(timeout=120)
    assert job.state == embed_job.FAILED and "another file was opened" in job.message
    assert writeback.read_metadata(bpy.data.objects["Vase"]) == {}


@pytest.mark.parametrize("error", [OSError(13, "Permission denied", "/tmp/asset2vec-embed"),
                                   bundle.BundleError("asset name must not be empty")])
def test_embed_operator_reports_file_and_bundle_errors(addon, backend, monkeypatch, error):
    bpy = addon
    configure(backend.url)

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(embed_job, "start", fail)
    _select(bpy, box("Stool"))
    with pytest.raises(RuntimeError) as caught:  # the operator's ERROR report, not a Python traceback
        bpy.ops.asset2vec.embed()
    assert "Traceback" not in str(caught.value)
    assert ("Permission denied: /tmp/asset2vec-embed" if isinstance(error, OSError)
            else "asset name must not be empty") in str(caught.value)
