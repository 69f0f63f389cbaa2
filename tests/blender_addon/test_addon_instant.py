"""Embed in Blender against a backend with an instant encoder: the instant answer is written at once and shown
as refining; the refined answer replaces it when the backend's refinement job is done (real bpy, real HTTP)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from backend.service.engine import Engine
from backend.service.server import Service
from blender_addon import embed_job, session, writeback
from shared import metadata as M
from tests.blender_addon.addon_support import configure, run_embed, support
from tests.blender_addon.blender_helpers import box
from tests.blender_addon.test_addon_panels import _panels

pytestmark = pytest.mark.slow  # renders with Cycles; serves the tiny trained run


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Engine]]:
    engine = Engine.open(support.run_with_encoder(tmp_path_factory.mktemp("instant") / "run"),
                         invert_steps=support.INVERT_STEPS)
    svc = Service(engine, port=0, advertise=False).start_in_thread()
    yield svc, engine
    svc.stop()
    engine.close()


def _embed_target(bpy, url: str, name: str, size: tuple, color: tuple):
    """A marked asset with the artist's tag "mine", active and set as Embed's target, the add-on on ``url``."""
    configure(url)
    obj = box(name, size=size, color=color)
    obj.asset_mark()
    obj.asset_data.tags.new("mine")
    bpy.context.view_layer.objects.active = obj
    bpy.context.scene.asset2vec.capture_target = "OBJECT"
    return obj


def test_instant_answer_then_the_refined_one(addon, backend) -> None:
    bpy = addon
    service, engine = backend
    crate = _embed_target(bpy, service.url, "Crate", (0.6, 0.4, 0.4), (0.1, 0.3, 0.9))

    job = run_embed(bpy)
    assert job.state == embed_job.DONE, job.message
    assert "refining" in job.message
    first = writeback.read_metadata(crate)
    assert first[M.CODE_SOURCE] == "encoder" and first[M.PREDICTED_TAGS] and first[M.NEIGHBOURS]
    assert engine.catalogue.code_info(first[M.ASSET_NAME], engine.model_id)["source"] in ("encoder", "inversion")
    refining = embed_job.refinement_of(crate)
    assert refining is not None and refining.jobs
    panels = _panels(bpy)
    assert "Instant answer; refining on the backend..." in panels["Asset2Vec"].texts()
    assert "From the instant encoder: refining..." in panels["Predicted Tags"].texts()

    crate.asset_data.tags.new("by-hand")  # the artist works on meanwhile: nothing of theirs is lost
    embed_job.pump_refinements(timeout=120)
    assert embed_job.refinement_of(crate) is None and refining.state == embed_job.DONE, refining.message
    data = writeback.read_metadata(crate)
    assert data[M.CODE_SOURCE] == "inversion"
    assert data[M.CODE_SHAPE] != first[M.CODE_SHAPE]  # the refined code replaced the instant one
    assert engine.catalogue.code_info(data[M.ASSET_NAME], engine.model_id)["source"] == "inversion"
    stored = engine.neighbours(data[M.ASSET_NAME], "both", 10).neighbours
    assert [n["name"] for n in writeback.neighbours(crate, "both")] == [n.name for n in stored]
    assert {"mine", "by-hand"} <= set(writeback.asset_tags(crate))
    assert session.get().status["embed"][1].startswith("refined 'Crate'")
    panels = _panels(bpy)
    assert not any("refining" in t for t in panels["Asset2Vec"].texts() + panels["Predicted Tags"].texts())


def test_a_new_embed_replaces_the_refinement_of_the_same_asset(addon, backend) -> None:
    bpy = addon
    service, _ = backend
    configure(service.url)
    obj = box("Lamp")
    bpy.context.view_layer.objects.active = obj
    bpy.context.scene.asset2vec.capture_target = "OBJECT"
    run_embed(bpy)
    older = embed_job.refinement_of(obj)
    assert older is not None
    run_embed(bpy)
    newer = embed_job.refinement_of(obj)
    assert newer is not None and newer is not older and older.cancel.is_set()
    embed_job.pump_refinements(timeout=120)
    assert newer.state == embed_job.DONE and writeback.read_metadata(obj)[M.CODE_SOURCE] == "inversion"


def test_refinement_removes_what_it_no_longer_proposes_and_keeps_the_pre_embed_backup(addon, backend,
                                                                                      tmp_path) -> None:
    """Issue 17: the refined answer corrects the tags the instant one wrote (never the artist's, never an accepted
    one); "Save After Embedding" keeps the pre-embed file as the .blend1 through the refinement's save."""
    from dataclasses import replace

    from blender_addon.refinement import Refinement

    bpy = addon
    service, _ = backend
    chair = _embed_target(bpy, service.url, "Chair", (0.5, 0.5, 0.9), (0.8, 0.1, 0.1))
    path = tmp_path / "chair.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))

    job = run_embed(bpy, save_after=True)  # the real instant answer, saved
    assert job.state == embed_job.DONE, job.message
    real = embed_job.refinement_of(chair)
    assert real is not None and real.options.save_after and real.backed_up
    embed_job.pump_refinements(timeout=120)  # the real refined answer, saved again
    assert real.state == embed_job.DONE and "saved chair.blend" in real.message, real.message
    backup = _raw(path.with_name("chair.blend1"))
    assert b"BLENDER" in backup[:16] and b"code_source" not in backup  # the file as it was before the Embed
    assert b"code_source" in _raw(path)

    # Two answers through the refinement's own code path: one proposing "office"/"swivel" (auto-added), then the
    # artist accepts "liked", then a refined answer where all of them (and the artist's "mine") fall to 0.019.
    refined = real.results[0]
    chair = bpy.data.objects["Chair"]

    def apply(predicted: dict[str, float], proposed: dict[str, float]) -> Refinement:
        task = Refinement(session.get(), real.target, real.options, {0: replace(refined, predicted_tags=predicted,
                                                                                proposed_tags=proposed)}, [None],
                          backed_up=real.backed_up)
        task.refined = 1
        task.complete()
        assert task.state == embed_job.DONE, task.message
        return task

    kept = {t for t in writeback.read_metadata(chair)[M.ADDED_TAGS]}
    apply({"office": 0.52, "swivel": 0.52, "liked": 0.4, "mine": 0.7},
          {"office": 0.52, "swivel": 0.52})
    assert {"office", "swivel", "mine"} <= set(writeback.asset_tags(chair))
    assert bpy.ops.asset2vec.tag_accept(tag="liked") == {"FINISHED"}
    low = apply({"office": 0.019, "swivel": 0.019, "liked": 0.019, "mine": 0.019}, {})
    tags = set(writeback.asset_tags(chair))
    assert {"office", "swivel"}.isdisjoint(tags) and {"mine", "liked"} <= tags
    assert set(writeback.read_metadata(chair)[M.ADDED_TAGS]) == kept | {"liked"}
    assert "removed office, swivel after refinement" in low.message
    assert "removed office, swivel after refinement" in session.get().status["embed"][1]
    assert _raw(path.with_name("chair.blend1")) == backup  # still the pre-embed file


def _raw(path) -> bytes:
    """A .blend's bytes, uncompressed (Blender saves zstd-compressed files by default)."""
    data = path.read_bytes()
    if data[:4] == b"\x28\xb5\x2f\xfd":
        zstandard = pytest.importorskip("zstandard")
        with zstandard.ZstdDecompressor().stream_reader(data) as reader:
            data = reader.read()
    return data
