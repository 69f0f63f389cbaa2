"""Review Tags in the sidebar: the real add-on (registered in bpy) against a live backend on loopback fetches the
review queue with thumbnails, accepts one question (the backend stores it and retrains) and reports a dead backend.

The panel's real ``draw()`` is recorded with bench/panel_preview.py's layout recorder (headless Blender has no UI).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bench import panel_preview
from blender_addon import review_ui, session
from tests.blender_addon.addon_support import configure, support

pytestmark = pytest.mark.slow  # trains a model (or serves the tiny trained run)



def _draw(bpy) -> panel_preview.Recorder:
    rec = panel_preview.Recorder()
    review_ui.ASSET2VEC_PT_review.draw(SimpleNamespace(layout=rec), bpy.context)
    return rec


def test_refresh_shows_the_queue_and_accept_retrains_on_the_backend(addon, backend, engine):
    bpy = addon
    configure(backend.url)
    assert "Refresh to see the tags the model is least sure of" in _draw(bpy).texts()

    assert bpy.ops.asset2vec.review_refresh() == {"FINISHED"}
    review_ui.pump()
    items = session.get().review_items
    assert 1 <= len(items) <= review_ui.QUEUE_LIMIT and session.get().status["review"] == ("INFO", "")
    assert {i.tag for i in items} <= {"ball", "crate"}
    for it in items:  # thumbnails fetched for the rows (training assets: rendered by the decoder)
        assert session.get().thumbnails.path(it.name).read_bytes().startswith(b"\x89PNG")
    rec = _draw(bpy)
    first = items[0]
    assert f"{first.name} — {first.tag} ({first.probability:.0%})" in rec.texts()
    # one picture per row (headless Blender gives previews no icon id: the placeholder icon stands in)
    pictures = [it for it in rec.flat() if it[0] == "thumb" or (it[0] == "label" and it[2] == "IMAGE_DATA")]
    assert len(pictures) == len(items)
    buttons = [it for it in rec.flat() if it[0] == "button" and it[3] == "asset2vec.review_answer"]
    assert len(buttons) == 2 * len(items)
    accept, reject = buttons[0][4], buttons[1][4]
    assert (accept.name, accept.tag, accept.accept) == (first.name, first.tag, True)
    assert (reject.name, reject.tag, reject.accept) == (first.name, first.tag, False)

    p_before = first.probability
    assert bpy.ops.asset2vec.review_answer(name=first.name, tag=first.tag, accept=True) == {"FINISHED"}
    review_ui.pump()
    level, message = session.get().status["review"]
    assert level == "INFO" and message.startswith(f"accepted '{first.tag}' for {first.name}")
    assert first.tag in engine.catalogue.tags_of(first.name)["artist"]  # stored as an artist tag
    assert engine.catalogue.tags_of(first.name, engine.model_id)["probabilities"][first.tag] > p_before
    assert (first.name, first.tag) not in {(i.name, i.tag) for i in session.get().review_items}
    assert message[:20] in " ".join(_draw(bpy).texts())


def test_unreachable_backend_and_missing_question_are_reported(addon):
    bpy = addon
    configure(f"http://127.0.0.1:{support.free_port()}")
    assert bpy.ops.asset2vec.review_refresh() == {"FINISHED"}
    review_ui.pump()
    level, message = session.get().status["review"]
    assert level == "ERROR" and message.startswith("no Asset2Vec backend is running")
    errors = [it for it in _draw(bpy).flat() if it[0] == "label" and it[2] == "ERROR"]
    assert errors and errors[0][1].startswith("no Asset2Vec backend")
    with pytest.raises(RuntimeError, match="refresh the review queue first"):
        bpy.ops.asset2vec.review_answer(name="", tag="")
