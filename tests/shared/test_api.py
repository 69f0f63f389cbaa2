"""The wire contract: every class round-trips through JSON, and a bad field is refused by name."""

from __future__ import annotations

from typing import Any

import pytest

from shared import api

EMBED: dict[str, Any] = {
    "name": "chairs/Chair_01", "model_id": "m1", "shape": [0.1, 0.2], "texture": [0.3], "code_source": "encoder",
    "source_file": "//chairs.blend", "asset_name": "Chair_01", "content_hash": "abc", "psnr": None, "seconds": 0.5,
    "predicted_tags": {"chair": 0.9, "table": 0.1, "wood": 0.6}, "proposed_tags": {"chair": 0.9}, "threshold": 0.5,
    "write_thresholds": {"chair": 0.85, "table": None, "wood": 0.7}, "suggested_tags": {"wood": 0.6},
    "tag_reasons": {"chair": "written: 0.90 >= its threshold 0.85"}, "artist_tags": ["mine"],
    "neighbours": {"shape": [{"name": "chairs/Chair_02", "distance": 0.25, "rank": 1, "source_file": "//c.blend",
                              "asset_name": "Chair_02", "family": "", "category": "chair",
                              "thumbnail_url": "/v1/assets/chairs%2FChair_02/thumbnail", "tags": ["chair", "wood"],
                              "copies": 2}]},
    "retrain_advice": None, "thumbnail_url": "/v1/assets/chairs%2FChair_01/thumbnail", "refine_job": "j2",
}


def test_embed_result_round_trips() -> None:
    result = api.EmbedResult.from_json(EMBED)
    assert result.neighbours["shape"][0].source_file == "//c.blend" and result.refine_job == "j2"
    assert [n.name for n in result.all_neighbours()] == ["chairs/Chair_02"]
    assert result.to_json() == {**EMBED, "neighbours": {"shape": EMBED["neighbours"]["shape"]}}
    assert api.EmbedResult.from_json(result.to_json()) == result


def test_each_tag_has_its_own_write_threshold_and_an_older_backends_single_one_still_reads() -> None:
    result = api.EmbedResult.from_json(EMBED)
    assert [result.threshold_of(t) for t in ("chair", "table", "wood")] == [0.85, None, 0.7]
    assert result.threshold_of("unknown") is None  # not predicted by this model: never written
    old = {k: v for k, v in EMBED.items() if k not in ("write_thresholds", "suggested_tags", "tag_reasons",
                                                       "artist_tags")}
    older = api.EmbedResult.from_json({**old, "threshold": 0.4})  # a backend from before per-tag thresholds
    assert older.write_thresholds == {} and older.artist_tags == []
    assert [older.threshold_of(t) for t in ("chair", "table")] == [0.4, 0.4]
    with pytest.raises(api.ApiError, match=r"EmbedResult.write_thresholds.chair: expected a number"):
        api.EmbedResult.from_json({**EMBED, "write_thresholds": {"chair": "high"}})


def test_optional_fields_default_and_none_ones_are_left_out() -> None:
    minimal = api.EmbedResult.from_json({"name": "a", "model_id": "m", "shape": [1], "texture": [2]})
    assert minimal.code_source == "inversion" and minimal.predicted_tags == {} and minimal.shape == [1.0]
    out = minimal.to_json()
    assert "refine_job" not in out and "instant_seconds" not in out and out["psnr"] is None


def test_unknown_keys_are_ignored() -> None:
    assert api.QueueStats.from_json({"queued": 1, "running": 0, "added_later": True}) == api.QueueStats(1, 0)


@pytest.mark.parametrize(
    ("cls", "data", "message"),
    [
        (api.EmbedResult, {"model_id": "m", "shape": [], "texture": []}, "EmbedResult.name: missing"),
        (api.EmbedResult, {**EMBED, "shape": [0.1, "x"]}, "EmbedResult.shape[1]: expected a number, got str 'x'"),
        (api.EmbedResult, {**EMBED, "code_source": "magic"}, "EmbedResult.code_source: must be one of"),
        (api.EmbedResult, {**EMBED, "neighbours": {"colour": []}}, "EmbedResult.neighbours: must be one of"),
        (api.EmbedResult, {**EMBED, "neighbours": {"shape": [{"name": "x"}]}},
         "EmbedResult.neighbours.shape[0].distance: missing"),
        (api.EmbedResult, {**EMBED, "predicted_tags": {"chair": "high"}},
         "EmbedResult.predicted_tags.chair: expected a number"),
        (api.JobStatus, {"id": "j", "status": "sleeping"}, "JobStatus.status: must be one of"),
        (api.JobStatus, {"id": "j", "status": "done", "progress": True}, "JobStatus.progress: expected a number"),
        (api.ServerInfo, {"model_id": "m", "background": {"id": 3, "status": "done"}},
         "ServerInfo.background.id: expected a string, got int 3"),
        (api.ServerInfo, {"model_id": "m", "tags": "chair"}, "ServerInfo.tags: expected a list"),
        (api.ModelsList, {"models": [{"model_id": "m", "active": "yes"}]},
         "ModelsList.models[0].active: expected true or false"),
        (api.ReviewRequest, {"name": "a", "tag": " ", "accept": True}, "ReviewRequest.tag: must not be empty"),
        (api.ReviewRequest, {"name": "a", "tag": "t", "accept": True, "limit": 0}, "ReviewRequest.limit: must be"),
        (api.ReviewRequest, {"name": "a", "tag": "t", "accept": True, "limit": 2.5},
         "ReviewRequest.limit: expected a whole number"),
        (api.IndexRequest, {"folder": "/lib", "steps": -3}, "IndexRequest.steps: must be a positive number"),
        (api.TrainRequest, {"what": "tags", "minutes": "ten"}, "TrainRequest.minutes: expected a number"),
        (api.NeighbourList, [], "NeighbourList: expected a JSON object, got list"),
    ],
)
def test_a_bad_field_is_refused_by_name(cls: type[api.Wire], data: Any, message: str) -> None:
    with pytest.raises(api.ApiError) as e:
        cls.from_json(data)
    assert message in str(e.value)
    assert isinstance(e.value, ValueError)


def test_refine_outcome() -> None:
    dropped = api.refine_outcome({"name": "a", "model_id": "m", "dropped": True, "message": "nothing to refine"})
    assert isinstance(dropped, api.RefineDropped) and dropped.message == "nothing to refine"
    assert isinstance(api.refine_outcome(EMBED), api.EmbedResult)


def test_every_contract_class_round_trips_its_defaults() -> None:
    import dataclasses
    import typing

    required = {"str": "x", "float": 1.5, "int": 2, "bool": True, "list": []}
    allowed = {"JobStatus": {"status": api.DONE}, "NeighbourList": {"space": "both"}}
    for name, cls in api.CONTRACT.items():
        hints = typing.get_type_hints(cls)
        data = {f.name: required[hints[f.name].__name__] for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                and hasattr(hints[f.name], "__name__") and hints[f.name].__name__ in required}
        data.update(allowed.get(name, {}))
        obj = cls.from_json(data)
        assert cls.from_json(obj.to_json()) == obj, name


def test_constants_once() -> None:
    assert api.SPACES == ("shape", "texture", "both") and api.THUMBNAIL_VIEW == 7
    assert api.thumbnail_url("a/b c") == "/v1/assets/a%2Fb%20c/thumbnail"
