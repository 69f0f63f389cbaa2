"""Tags an artist can trust (issue 17), with the real add-on in bpy against a served model on loopback: two tags of
an exclusive group are never both written into ``asset_data.tags`` (the more probable one is, the other is only
suggested), the Review Tags panel never asks about a tag learnt from one example, and a tag accepted there is never
removed from the artist's file by a later answer. The tiny run's tags cannot show the default 0.9 precision out
of fold, so it is served at ``support.TAG_TARGET``.

(bulk-tag writing the same tags as Embed with refinement: tests/blender_addon/test_bulk_final.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from backend.cli import main
from backend.service.engine import Engine
from bench import panel_preview
from blender_addon import embed_job, review_ui, session, writeback
from shared import metadata as M
from tests.blender_addon.addon_support import configure, run_embed, support
from tests.blender_addon.blender_helpers import box

pytestmark = pytest.mark.slow  # renders with Cycles; serves the tiny trained run

#: "toy" is on exactly the balls, so its classifier equals ball's: both are always likely together, the hardest case
#: for an exclusive group (declared in a tag list). "mine-wood" is on one asset: too rare to learn.
TAG_LIST = "".join(f"ball_{c},toy\n" for c in ("red", "green", "blue", "yellow")) + "crate_red,mine-wood\n"
PAIR = ("ball", "toy")


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    folder = tmp_path_factory.mktemp("trust")
    run = support.fresh_run_copy(folder / "run")
    (folder / "tags.csv").write_text(TAG_LIST)
    (folder / "groups.csv").write_text(",".join(PAIR) + "\n")
    assert main(["tags", "import", str(folder / "tags.csv"), "--run", str(run)]) == 0
    assert main(["tags", "train", "--run", str(run), "--exclusive", str(folder / "groups.csv"),
                 "--target-precision", str(support.TAG_TARGET)]) == 0
    eng = Engine.open(run, invert_steps=support.INVERT_STEPS, tag_target=support.TAG_TARGET)
    yield eng
    eng.close()


def test_two_tags_of_an_exclusive_group_are_never_both_written(addon: Any, backend: Any, engine: Engine) -> None:
    bpy = addon
    configure(backend.url)
    model = engine.tag_model
    assert list(PAIR) in model.exclusive_groups and "mine-wood" not in model.tags
    crate = box("Crate", size=(0.6, 0.4, 0.4), color=(0.1, 0.3, 0.9))
    crate.asset_mark()
    bpy.context.view_layer.objects.active = crate
    bpy.context.scene.asset2vec.capture_target = "OBJECT"
    job = run_embed(bpy)
    assert job.state == embed_job.DONE, job.message
    predicted = writeback.read_metadata(crate)[M.PREDICTED_TAGS]
    # (the tiny run takes any Blender box for a ball)
    over = [t for t in PAIR if model.thresholds[t] is not None and predicted[t] >= model.thresholds[t]]
    assert over == list(PAIR), f"both must be writable for the test to mean anything: {predicted}"
    written = set(writeback.asset_tags(crate)) & set(PAIR)
    assert len(written) == 1, writeback.asset_tags(crate)  # the more probable (a tie: the first by name)
    loser = (set(PAIR) - written).pop()
    pending = {t: state for t, _, state in writeback.pending_tags(crate)}
    assert pending[written.pop()] == "added" and pending[loser] == "proposed"  # the other one: the artist's call


def test_the_review_panel_never_asks_about_a_tag_learnt_from_one_example(addon: Any, backend: Any,
                                                                       engine: Engine) -> None:
    bpy = addon
    configure(backend.url)
    assert "mine-wood" in engine.catalogue.tags_of("crate_red")["artist"]
    assert bpy.ops.asset2vec.review_refresh() == {"FINISHED"}
    review_ui.pump()
    items = session.get().review_items
    assert items and {i.tag for i in items} <= set(engine.tag_model.tags)
    rec = panel_preview.Recorder()
    review_ui.ASSET2VEC_PT_review.draw(SimpleNamespace(layout=rec), bpy.context)
    shown = " ".join(rec.texts())
    assert " — " in shown and "mine-wood" not in shown
    # Even asked for every question there is, the one-example tag never comes up.
    from shared.client import Client

    queue = Client(backend.url).review_queue(100)
    assert queue.items and all(i.tag != "mine-wood" and i.learnt for i in queue.items)


def test_a_tag_accepted_in_the_review_queue_is_never_removed_from_the_file(addon: Any, backend: Any,
                                                                          engine: Engine) -> None:
    from shared import api

    bpy = addon
    configure(backend.url)
    obj = box("Toybox", size=(0.5, 0.5, 0.5), color=(0.9, 0.2, 0.1))
    obj.asset_mark()
    bpy.context.view_layer.objects.active = obj
    bpy.context.scene.asset2vec.capture_target = "OBJECT"
    assert run_embed(bpy).state == embed_job.DONE
    data = writeback.read_metadata(obj)
    (tag,) = set(data[M.ADDED_TAGS]) & set(PAIR)  # added by Asset2Vec itself, not yet the artist's
    assert tag not in data[writeback.ACCEPTED_TAGS]
    # The artist accepts it in the Review Tags panel (the catalogue's answer; the open file is not touched).
    assert bpy.ops.asset2vec.review_answer(name=data[M.ASSET_NAME], tag=tag, accept=True) == {"FINISHED"}
    review_ui.pump()
    assert tag in engine.catalogue.tags_of(data[M.ASSET_NAME])["artist"]
    # Embedded again: the answer names it among the artist's tags, and the file records it as accepted ...
    assert run_embed(bpy).state == embed_job.DONE
    assert tag in writeback.read_metadata(obj)[writeback.ACCEPTED_TAGS]
    # ... so no later answer removes it, even one that gives it no chance and does not name it (an older backend).
    later = api.EmbedResult(name=data[M.ASSET_NAME], model_id=engine.model_id, shape=[0.0] * 32, texture=[0.0] * 32,
                            predicted_tags={t: 0.01 for t in PAIR})
    assert writeback.write_result(obj, later).removed == [] and tag in writeback.asset_tags(obj)
