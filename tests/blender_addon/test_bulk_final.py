"""bulk-tag writes final answers (issue 17): against a backend with an instant encoder, bulk-tag waits for each
answer's refinement and writes the refined one, like Embed with refinement does; a dry run and the real run after
it report the same counts (the real run reuses only final answers from the journal); the report says why each tag
is added. Real headless Blender workers, real bpy, a live backend on loopback."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.bulk.driver import bulk_tag
from backend.service.engine import Engine
from backend.service.server import Service
from blender_addon import embed_job, writeback
from shared import metadata as M
from tests.blender_addon.addon_support import configure, run_embed, support
from tests.blender_addon.blender_helpers import box
from tests.blender_addon.bulk_support import bulk_options, read_assets

pytestmark = pytest.mark.slow  # renders with Cycles; trains the tiny run's instant encoder

#: The add-on's capture settings (addon_support.configure), so both sides capture the same views.
SAME_CAPTURE = {"size": 32, "samples": 4, "threshold": None}


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    engine = Engine.open(support.run_with_encoder(tmp_path_factory.mktemp("bulk-final") / "run"),
                         invert_steps=support.INVERT_STEPS, tag_target=support.TAG_TARGET)
    svc = Service(engine, port=0, advertise=False).start_in_thread()
    yield svc
    svc.stop()
    engine.close()


def _library(bpy, folder: Path) -> Path:
    """One .blend with two marked boxes (an artist tag each), saved into ``folder`` (the add-on stays registered)."""
    for name, size, color in (("Crate", (0.6, 0.4, 0.4), (0.1, 0.3, 0.9)), ("Pillar", (0.3, 0.3, 1.2),
                                                                            (0.9, 0.2, 0.1))):
        ob = box(name, size=size, color=color)
        ob.asset_mark()
        ob.asset_data.tags.new("mine")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "props.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return path


def test_bulk_tag_writes_the_refined_answer_like_embed_and_dry_run_counts_match(addon, backend, tmp_path) -> None:
    bpy = addon
    configure(backend.url)
    lib = tmp_path / "library"
    lib.mkdir()
    shutil.copyfile(_library(bpy, tmp_path / "embedded"), lib / "props.blend")

    # Embed in the add-on, refinement included (the open file is the copy in "embedded").
    crate = bpy.data.objects["Crate"]
    bpy.context.view_layer.objects.active = crate
    bpy.context.scene.asset2vec.capture_target = "OBJECT"
    job = run_embed(bpy)
    assert job.state == embed_job.DONE and "refining" in job.message, job.message
    embed_job.pump_refinements(timeout=120)
    by_embed = writeback.read_metadata(crate)
    assert by_embed[M.CODE_SOURCE] == "inversion"
    embed_tags = sorted(writeback.asset_tags(crate))
    assert len(embed_tags) > 1, "the tiny run proposes a tag for the crate (the comparison needs one)"

    dry = bulk_tag(lib, bulk_options(backend, dry_run=True, **SAME_CAPTURE))
    assert not dry.failures and dry.embedded == 2 and dry.files_written == 0 and dry.tags_added > 0
    report = json.loads(Path(dry.report["json"]).read_text())
    proposed = {a["name"]: a for f in report["files"] for a in f["assets"]}
    assert sorted(proposed) == ["Crate", "Pillar"]
    # The refined answer, not the instant one; every tag to add says why: its probability vs its own threshold.
    assert {a["code_source"] for a in proposed.values()} == {"inversion"}
    for a in proposed.values():
        assert set(a["why"]) == set(a["to_add"]) | set(a["to_remove"])
        for t in a["to_add"]:
            p, th = map(float, re.fullmatch(r"added: p ([\d.]+) >= its threshold ([\d.]+)", a["why"][t]).groups())
            assert p == pytest.approx(a["to_add"][t], abs=0.005) and p >= th >= 0.5  # a calibrated threshold

    run = bulk_tag(lib, bulk_options(backend, **SAME_CAPTURE))
    assert not run.failures and run.embedded == 0, "the dry run's final answers are reused"
    for key in ("files_changed", "assets", "tags_added", "tags_removed"):
        assert getattr(run, key) == getattr(dry, key), key
    assert run.files_changed == run.files_written == 1
    written = json.loads(Path(run.report["json"]).read_text())
    for a in (a for f in written["files"] for a in f["assets"]):
        assert a["added"] == list(proposed[a["name"]]["to_add"]) and a["removed"] == []

    # bulk-tag wrote the refined answer, with the same tags as Embed with refinement.
    bulk = read_assets(bpy, lib / "props.blend")
    assert {a["meta"][M.CODE_SOURCE] for a in bulk.values()} == {"inversion"}
    assert sorted(bulk["Crate"]["tags"]) == embed_tags
    assert bulk["Crate"]["meta"][M.PREDICTED_TAGS] == pytest.approx(by_embed[M.PREDICTED_TAGS], abs=0.05)


def test_the_journal_hands_back_only_final_answers_and_instant_ones_are_not_written(blender) -> None:
    from dataclasses import replace

    from blender_addon.headless import bulk as B
    from shared import api

    instant = api.EmbedResult(name="lib/Crate", model_id="m1", shape=[0.0] * 32, texture=[0.0] * 32,
                              code_source="encoder", refine_error="the queue is full")
    final = replace(instant, code_source="inversion", refine_error=None, refined_from="encoder")
    assert B._resumed({"hash": "h1", "result": instant.to_json()}, "h1", "m1") is None  # a refinement changes it
    assert B._resumed({"hash": "h1", "result": final.to_json()}, "h1", "m1").code_source == "inversion"
    assert B._resumed({"hash": "h1", "result": final.to_json()}, "h2", "m1") is None  # other content
    assert B._resumed({"hash": "h1", "result": final.to_json()}, "h1", "m2") is None  # other model
    assert B.final_answer(None, final, 1.0) is final  # nothing to wait for
    with pytest.raises(B.AnswerError, match="instant encoder only .the queue is full"):
        B.final_answer(None, instant, 1.0)
