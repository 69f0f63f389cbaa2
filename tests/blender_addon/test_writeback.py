"""Metadata write-back on real bpy IDs: tags added and recorded, the artist's tags and description kept,
everything survives save + reopen, and "remove predicted tags" undoes exactly what was added."""

from __future__ import annotations

import pytest

from blender_addon import writeback as W
from shared import api
from shared import metadata as M
from tests.blender_addon.blender_helpers import box


def _result(predicted: dict[str, float], threshold: float = 0.5) -> api.EmbedResult:
    """The backend's embed answer (its ``proposed_tags``: every tag at or over the threshold, as for a bundle
    captured without tags)."""
    return api.EmbedResult.from_json({
        "name": "Chair", "model_id": "model-1", "shape": [0.01 * i for i in range(32)],
        "texture": [-0.02 * i for i in range(32)], "predicted_tags": predicted, "threshold": threshold,
        "proposed_tags": {t: p for t, p in predicted.items() if p >= threshold}, "content_hash": "hash-1",
        "neighbours": {
            "shape": [{"name": "stool", "source_file": "/lib/props.blend", "asset_name": "Stool", "distance": 0.25},
                      {"name": "bench", "source_file": "/lib/seats.blend", "asset_name": "Bench", "distance": 0.5}],
            "texture": [{"name": "table", "source_file": "/lib/tables.blend", "asset_name": "Table",
                         "distance": 0.125}],
            "both": [],
        },
    })


def _asset(name: str = "Chair", tags: tuple[str, ...] = ("wood", "armrests")):
    obj = box(name)
    obj.asset_mark()
    for t in tags:
        obj.asset_data.tags.new(t)
    obj.asset_data.description = "my own words"
    return obj


def test_tags_added_artist_tags_kept_and_reopen_and_remove_restore_exactly(blender, tmp_path):
    bpy = blender
    obj = _asset()
    report = W.write_result(obj, _result({"armrests": 0.9, "swivel": 0.8, "legs": 0.3}))
    # "armrests" was predicted too, but it is the artist's: never recorded as added.
    assert report.added == ["swivel"] and report.is_asset and "added tag(s) swivel" in report.summary()
    assert W.asset_tags(obj) == ["wood", "armrests", "swivel"]
    assert obj.asset_data.description == "my own words"

    path = tmp_path / "chair.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.open_mainfile(filepath=str(path))
    obj = bpy.data.objects["Chair"]
    data = W.read_metadata(obj)
    assert data[M.ADDED_TAGS] == ["swivel"] and data[M.MODEL_ID] == "model-1" and data[M.ASSET_NAME] == "Chair"
    assert data[M.PREDICTED_TAGS] == pytest.approx({"armrests": 0.9, "swivel": 0.8, "legs": 0.3})
    assert data[M.CODE_SHAPE] == pytest.approx([0.01 * i for i in range(32)])
    assert len(data[M.CODE_TEXTURE]) == 32 and data[M.CONTENT_HASH] == "hash-1" and data[M.TIMESTAMP].endswith("+00:00")
    assert [(n["name"], n["space"], n["file"]) for n in data[M.NEIGHBOURS]] == [
        ("stool", "shape", "/lib/props.blend"), ("bench", "shape", "/lib/seats.blend"),
        ("table", "texture", "/lib/tables.blend")]
    assert [n["asset_name"] for n in W.neighbours(obj, "texture")] == ["Table"]
    assert W.asset_tags(obj) == ["wood", "armrests", "swivel"]

    assert W.remove_predicted_tags(obj) == ["swivel"]
    assert W.asset_tags(obj) == ["wood", "armrests"] and obj.asset_data.description == "my own words"
    assert W.remove_predicted_tags(obj) == []  # idempotent


def test_review_accept_reject_and_reembed(blender):
    obj = _asset()
    report = W.write_result(obj, _result({"armrests": 0.9, "swivel": 0.8, "legs": 0.3}), auto_accept=False)
    assert report.added == [] and report.proposed == ["swivel"]
    assert W.asset_tags(obj) == ["wood", "armrests"]
    assert [(t, s) for t, _, s in W.pending_tags(obj)] == [("armrests", "artist"), ("swivel", "proposed"),
                                                           ("legs", "proposed")]

    assert W.accept_tag(obj, "legs") and W.asset_tags(obj) == ["wood", "armrests", "legs"]
    assert not W.accept_tag(obj, "armrests")  # the artist's tag: nothing to accept
    assert not W.reject_tag(obj, "armrests") and "armrests" in W.asset_tags(obj)  # never removes an artist tag
    assert W.reject_tag(obj, "legs") and W.asset_tags(obj) == ["wood", "armrests"]

    # Re-embedding: the rejected tag is not proposed again, earlier additions stay removable.
    W.accept_tag(obj, "swivel")
    report = W.write_result(obj, _result({"swivel": 0.9, "legs": 0.95, "round": 0.7}))
    assert report.added == ["round"]
    assert W.read_metadata(obj)[M.ADDED_TAGS] == ["swivel", "round"]
    assert sorted(W.remove_predicted_tags(obj)) == ["round", "swivel"]
    assert W.asset_tags(obj) == ["wood", "armrests"]


def test_unmarked_object_keeps_data_in_custom_property_unless_marking_is_asked(blender):
    plain = box("Plain")
    report = W.write_result(plain, _result({"swivel": 0.8}))
    assert plain.asset_data is None and not report.is_asset and report.added == []
    assert f"custom property '{M.NAMESPACE}' only" in report.summary()
    assert W.read_metadata(plain)[M.PREDICTED_TAGS] == pytest.approx({"swivel": 0.8})

    marked = box("Marked")
    report = W.write_result(marked, _result({"swivel": 0.8}), mark_as_asset=True)
    assert report.marked and marked.asset_data is not None and W.asset_tags(marked) == ["swivel"]

    with pytest.raises(W.WritebackError, match="embed it first"):
        W.accept_tag(box("Fresh"), "swivel")


def test_tag_deleted_by_hand_is_rejected_and_not_sent_back_as_the_artists(blender):
    from blender_addon.capture import asset_tags as artist_tags

    obj = _asset()
    W.write_result(obj, _result({"swivel": 0.8, "legs": 0.9}))
    assert W.asset_tags(obj) == ["wood", "armrests", "legs", "swivel"]
    # What goes to the backend as the artist's tags leaves out what Asset2Vec added.
    assert artist_tags(obj) == ["wood", "armrests"]

    obj.asset_data.tags.remove(obj.asset_data.tags["swivel"])  # the artist deletes a tag we added
    report = W.write_result(obj, _result({"swivel": 0.9, "legs": 0.9}))
    assert report.added == [] and "swivel" not in W.asset_tags(obj)
    data = W.read_metadata(obj)
    assert data[M.REJECTED_TAGS] == ["swivel"] and data[M.ADDED_TAGS] == ["legs"]
    assert artist_tags(obj) == ["wood", "armrests"]


def test_family_members_kept_when_embedded_again_as_a_single_asset(blender):
    obj = _asset()
    members = [{"name": "Chair__v000", "parameters": {"a2v_width": 1.0}}]
    W.write_result(obj, _result({"swivel": 0.8}), family_members=members)
    W.write_result(obj, _result({"swivel": 0.8}))
    assert W.read_metadata(obj)[M.FAMILY_MEMBERS] == members


def test_the_backends_proposals_are_used_not_recomputed(blender):
    obj = _asset(tags=())
    result = _result({"swivel": 0.9, "legs": 0.7, "round": 0.3})
    result.proposed_tags = {"swivel": 0.9}  # the backend left "legs" out (the bundle had it as the artist's tag)
    report = W.write_result(obj, result, auto_accept=False)
    assert report.proposed == ["swivel"] and W.proposed_for(obj, result) == ["swivel"]
    # An own threshold (bulk tagging's option): every predicted tag at or over it, less what the asset has.
    W.accept_tag(obj, "round")
    assert W.proposed_for(obj, result, threshold=0.25) == ["swivel", "legs"]


def test_a_later_answer_removes_only_the_tags_asset2vec_added_by_itself(blender):
    """Issue 17: a re-embed (or refinement) corrects what an earlier answer wrote; the artist's tags and the tags the
    artist accepted stay, even at the same low probability."""
    obj = _asset(tags=("mine",))
    first = W.write_result(obj, _result({"office": 0.52, "swivel": 0.52, "legs": 0.6, "mine": 0.7, "liked": 0.3}))
    assert first.added == ["legs", "office", "swivel"]
    assert W.accept_tag(obj, "liked")  # the artist accepts a proposal
    assert not W.accept_tag(obj, "legs")  # already added: now the artist's decision too
    low = {"office": 0.019, "swivel": 0.019, "legs": 0.019, "mine": 0.019, "liked": 0.019}
    assert W.stale_tags(obj, _result(low)) == ["office", "swivel"]
    later = W.write_result(obj, _result(low | {"round": 0.8}))
    assert later.removed == ["office", "swivel"] and later.added == ["round"]
    assert "removed office, swivel" in later.summary()
    assert sorted(W.asset_tags(obj)) == ["legs", "liked", "mine", "round"]
    data = W.read_metadata(obj)
    assert data[M.ADDED_TAGS] == ["legs", "liked", "round"] and data[W.ACCEPTED_TAGS] == ["liked", "legs"]
    assert data[M.REJECTED_TAGS] == []  # removed by a better answer, not by the artist: may come back
    # A tag the new answer knows nothing about cannot be judged: it stays.
    assert W.write_result(obj, _result({"other": 0.1})).removed == []
    assert "round" in W.asset_tags(obj)
    assert W.reject_tag(obj, "liked") and W.read_metadata(obj)[W.ACCEPTED_TAGS] == ["legs"]


def test_a_file_from_before_accepted_tags_were_kept_apart_loses_no_added_tag(blender):
    """Files written before ``accepted_tags`` existed cannot tell accepted from auto-added tags: a later answer
    removes none of them (an artist's accepted tag must never go); from then on they count as accepted."""
    from blender_addon.capture import asset_tags as captured_tags

    obj = _asset(tags=("mine",))
    W.write_result(obj, _result({"office": 0.9, "legs": 0.8}))
    del obj[M.NAMESPACE][M.ACCEPTED_TAGS]  # as an older release wrote it
    assert captured_tags(obj) == ["mine"]  # until then, its added tags are not sent as the artist's
    assert W.stale_tags(obj, _result({"office": 0.01, "legs": 0.01})) == []
    assert W.write_result(obj, _result({"office": 0.01, "legs": 0.01})).removed == []
    assert sorted(W.asset_tags(obj)) == ["legs", "mine", "office"]
    assert sorted(W.read_metadata(obj)[W.ACCEPTED_TAGS]) == ["legs", "office"]
    assert sorted(captured_tags(obj)) == ["legs", "mine", "office"]  # accepted tags are the artist's


def test_bulk_never_takes_an_instant_answer_for_a_final_one(blender):
    from blender_addon.headless.bulk import up_to_date

    obj = _asset()
    instant = api.EmbedResult.from_json({**_result({"legs": 0.8}).to_json(), "code_source": "encoder"})
    W.write_result(obj, instant)
    assert not up_to_date(obj, "hash-1", "model-1")  # its refinement never arrived: embed it again
    W.write_result(obj, api.EmbedResult.from_json({**instant.to_json(), "code_source": "inversion"}))
    assert up_to_date(obj, "hash-1", "model-1")


def _calibrated(predicted: dict[str, float], thresholds: dict[str, float | None],
                artist: tuple[str, ...] = ()) -> api.EmbedResult:
    """An answer of a backend with per-tag write thresholds: it proposes each tag at or over its own threshold."""
    proposed = {t: p for t, p in predicted.items() if thresholds.get(t) is not None and p >= thresholds[t]}
    return api.EmbedResult.from_json({**_result(predicted).to_json(), "proposed_tags": proposed,
                                      "write_thresholds": thresholds, "artist_tags": list(artist)})


def test_each_tag_is_judged_at_its_own_threshold_and_the_catalogues_artist_tags_stay(blender):
    """Issue 17: the stale-tag removal and its reasons use each tag's own write threshold; a tag the catalogue holds
    as the artist's (accepted in the review queue, maybe in another Blender) is never removed and becomes accepted."""
    thresholds = {"office": 0.9, "legs": 0.55, "round": None}
    obj = _asset(tags=("mine",))
    first = _calibrated({"office": 0.95, "legs": 0.6, "round": 0.99}, thresholds)
    assert W.write_result(obj, first).added == ["office", "legs"]  # "round" is a suggestion only, even at 0.99
    assert W.tag_reason(first, "office", True) == "added: p 0.95 >= its threshold 0.90"
    # Refined: office 0.7 (over the old single 0.5, under its own 0.9); legs 0.2, but accepted in the review queue.
    refined = _calibrated({"office": 0.7, "legs": 0.2, "round": 0.99}, thresholds, artist=("legs", "mine"))
    assert W.stale_tags(obj, refined) == ["office"]
    assert W.tag_reason(refined, "office", False) == "removed: p 0.70 < its threshold 0.90 (added by an earlier answer)"
    assert "never written" in W.tag_reason(refined, "round", False)
    report = W.write_result(obj, refined)
    assert report.removed == ["office"] and report.added == []
    assert sorted(W.asset_tags(obj)) == ["legs", "mine"]
    assert W.read_metadata(obj)[W.ACCEPTED_TAGS] == ["legs"]  # from now on the artist's, whatever the backend says
    assert W.write_result(obj, _calibrated({"legs": 0.01}, {"legs": 0.55})).removed == []
    assert "legs" in W.asset_tags(obj)
