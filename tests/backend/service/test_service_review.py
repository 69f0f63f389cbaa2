"""The tag review endpoints served for real on loopback: the queue, an answer that retrains, bad input."""

from __future__ import annotations

import httpx
import pytest

from backend.library.catalogue import Catalogue, import_run
from backend.library.tags import TagModel
from backend.service.engine import Engine
from shared import api
from tests.backend.service import service_support as support

pytestmark = pytest.mark.slow  # trains a model (or serves the tiny trained run)

P = api.API_PREFIX


def test_queue_answer_retrains_and_moves_on(http: httpx.Client, engine: Engine) -> None:
    r = http.get(f"{P}/review", params={"limit": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    items = body["items"]
    assert body["model_id"] == engine.model_id and len(items) == 3 and body["message"] == ""
    assert all(abs(a["probability"] - 0.5) <= abs(b["probability"] - 0.5) for a, b in zip(items, items[1:],
                                                                                           strict=False))
    for it in items:
        assert it["tag"] in {"ball", "crate"} and it["tag"] not in engine.catalogue.tags_of(it["name"])["artist"]
        assert it["thumbnail_url"] == f"{P}/assets/{it['name']}/thumbnail"
    assert http.get(items[0]["thumbnail_url"]).content.startswith(b"\x89PNG")

    first = items[0]
    r = http.post(f"{P}/review", json={"name": first["name"], "tag": first["tag"], "accept": True, "limit": 5})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["name"] == first["name"] and answer["accepted"] is True and answer["retrained"] is True
    assert answer["previous_probability"] == pytest.approx(first["probability"])
    assert answer["probability"] > first["probability"]  # the answer changed the prediction
    assert answer["thumbnail_url"] == f"{P}/assets/{first['name']}/thumbnail"
    assert 1 <= len(answer["queue"]) <= 5 and all("thumbnail_url" in i for i in answer["queue"])
    assert (first["name"], first["tag"]) not in {(i["name"], i["tag"]) for i in answer["queue"]}
    assert first["tag"] in engine.catalogue.tags_of(first["name"])["artist"]  # stored as an artist tag
    saved = TagModel.load(engine.tag_model_path, expect_model=engine.model_id)
    assert saved.tags == engine.tag_model.tags and saved.report[first["tag"]]["cross_validated"] is False

    second = answer["queue"][0]
    r = http.post(f"{P}/review", json={"name": second["name"], "tag": second["tag"], "accept": False})
    assert r.status_code == 200 and r.json()["accepted"] is False
    assert second["tag"] not in engine.catalogue.tags_of(second["name"])["artist"]
    answered = {(a["name"], a["tag"], a["accepted"]) for a in engine.catalogue.reviews()}
    assert answered == {(first["name"], first["tag"], True), (second["name"], second["tag"], False)}


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"name": "bal_red", "tag": "ball", "accept": True}, 404, "did you mean 'ball_red'"),
        ({"tag": "ball", "accept": True}, 422, "give the asset"),
        ({"name": "ball_red", "tag": " ", "accept": True}, 422, "give the tag"),
        ({"name": "ball_red", "tag": "ball", "accept": "yes"}, 422, '"accept" must be true or false'),
        ({"name": "ball_red", "tag": "ball", "accept": True, "limit": 0}, 422, "limit must be between"),
        (b"not json", 400, "not valid JSON"),
    ],
)
def test_bad_answers_are_refused_and_store_nothing(http: httpx.Client, engine: Engine, body, status: int,
                                                   words: str) -> None:
    before = len(engine.catalogue.reviews())
    raw = {"content": body, "headers": {"Content-Type": api.JSON_TYPE}}
    r = http.post(f"{P}/review", **(raw if isinstance(body, bytes) else {"json": body}))
    assert r.status_code == status and words in r.json()["detail"]
    assert len(engine.catalogue.reviews()) == before


@pytest.mark.parametrize("limit", ["0", "many", "101", "2.5"])
def test_bad_queue_limits(http: httpx.Client, limit: str) -> None:
    r = http.get(f"{P}/review", params={"limit": limit})
    assert r.status_code == 422 and "limit must be" in r.json()["detail"]


def test_empty_queue_says_how_tags_start(tmp_path) -> None:
    run_dir = support.fresh_run_copy(tmp_path / "run")
    from backend.training.run import load_run

    with Catalogue(tmp_path / "untagged.sqlite") as cat:
        import_run(cat, load_run(run_dir))
        for name in cat.asset_names():
            cat.set_artist_tags(name, [])
    eng = Engine.open(run_dir, catalogue_path=tmp_path / "untagged.sqlite")
    try:
        queue = eng.review_queue(5).to_json()
        assert queue["items"] == [] and "No asset has tags yet" in queue["message"]
        result = eng.review_answer("ball_red", "ball", True).to_json()  # stored even though nothing can be trained yet
        assert result["retrained"] is False and "answer stored" in result["message"]
        assert eng.catalogue.tags_of("ball_red")["artist"] == ["ball"]
    finally:
        eng.close()
