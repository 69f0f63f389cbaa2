"""The tag review endpoints served for real on loopback: the queue, an answer that retrains, bad input."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from backend.library.catalogue import Catalogue, import_run
from backend.library.tag_store import to_linear
from backend.library.tags import TagModel
from backend.service.engine import Engine
from shared import api
from tests.backend.service import service_support as support
from tests.backend.service.test_service_api import wait_job

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
    other = next(t for t in engine.tag_model.tags if t != first["tag"])
    kept = to_linear(engine.tag_model.classifiers[other])
    t0 = time.perf_counter()
    r = http.post(f"{P}/review", json={"name": first["name"], "tag": first["tag"], "accept": True, "limit": 5})
    seconds = time.perf_counter() - t0
    assert r.status_code == 200, r.text
    # Only the answered tag is retrained (issues 17/18): the other tag's classifier keeps its very coefficients.
    now = to_linear(engine.tag_model.classifiers[other])
    for key in ("mean", "scale", "coef", "intercept", "sig_a", "sig_b"):
        np.testing.assert_array_equal(getattr(now, key), getattr(kept, key))
    assert seconds < 5.0, f"an answer took {seconds:.1f} s"
    answer = r.json()
    assert answer["name"] == first["name"] and answer["accepted"] is True and answer["retrained"] is True
    assert answer["previous_probability"] == pytest.approx(first["probability"])
    assert answer["probability"] > first["probability"]  # the answer changed the prediction
    assert answer["thumbnail_url"] == f"{P}/assets/{first['name']}/thumbnail"
    assert 1 <= len(answer["queue"]) <= 5 and all("thumbnail_url" in i for i in answer["queue"])
    assert (first["name"], first["tag"]) not in {(i["name"], i["tag"]) for i in answer["queue"]}
    assert first["tag"] in engine.catalogue.tags_of(first["name"])["artist"]  # stored as an artist tag
    saved = TagModel.load(engine.tag_model_path, expect_model=engine.model_id)
    # The answered tag was retrained cross-validated (its write threshold calibrated anew).
    assert saved.tags == engine.tag_model.tags and saved.report[first["tag"]]["cross_validated"] is True

    # Embedded again (say from the artist's file, which does not have the accepted tag), the answer names the
    # accepted tag among the artist's tags, so the add-on never removes it (issue 17).
    r = http.post(f"{P}/embed", content=support.upload_bundle("pillar", "blue", name=first["name"]),
                  headers={"Content-Type": "application/zip"})
    assert r.status_code == 202, r.text
    status, _ = wait_job(http, r.json()["job"])
    assert status["status"] == "done", status
    res = http.get(f"{P}/jobs/{r.json()['job']}/result").json()
    assert {first["tag"], "pillar"} <= set(res["artist_tags"]) and first["tag"] not in res["proposed_tags"]

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
