"""The HTTP API served for real on loopback, with the real Engine on a tiny real run."""

from __future__ import annotations

import io
import socket
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from backend.service.engine import Engine
from backend.service.server import Service
from shared import api
from tests.backend.service import service_support as support

pytestmark = pytest.mark.slow  # trains a model (or serves the tiny trained run)

P = api.API_PREFIX


def wait_job(http: httpx.Client, job_id: str, timeout: float = 120.0) -> tuple[dict, list[float]]:
    """Poll a job until it is final; returns its last status and the progress values seen."""
    seen: list[float] = []
    deadline = time.monotonic() + timeout
    while True:
        r = http.get(f"{P}/jobs/{job_id}")
        assert r.status_code == 200, r.text
        status = r.json()
        seen.append(status["progress"])
        if status["status"] in ("done", "failed", "cancelled"):
            return status, seen
        assert time.monotonic() < deadline, f"job still {status['status']}"
        time.sleep(0.05)


def test_info(http: httpx.Client, engine: Engine) -> None:
    r = http.get(f"{P}/info")
    assert r.status_code == 200
    info = r.json()
    assert info["api_version"] == api.API_VERSION
    assert info["model_id"] == engine.run.model_id
    assert info["preset"] == "cpu-small" and info["device"] == "cpu"
    assert info["token_required"] is False and info["generic"] is False
    assert info["assets"] == len(support.TRAIN_ITEMS)
    # 8 tagged training assets: each kind tag has 4 with and 4 without, enough for a classifier.
    assert set(info["tags"]) == {"ball", "crate"}  # colours have only 2 examples each: skipped, not guessed


def test_embed_job_progress_and_result(http: httpx.Client, engine: Engine) -> None:
    data = support.upload_bundle("pillar", "blue")
    r = http.post(f"{P}/embed", content=data, headers={"Content-Type": "application/zip"})
    assert r.status_code == 202, r.text
    job = r.json()["job"]
    status, seen = wait_job(http, job)
    assert status["status"] == "done", status
    assert seen == sorted(seen) and seen[-1] == 1.0  # progress only moves forward
    res = http.get(f"{P}/jobs/{job}/result").json()
    assert res["name"] == "new_pillar_blue" and res["model_id"] == engine.run.model_id
    assert res["source_file"] == "//props.blend"
    assert len(res["shape"]) == 32 and len(res["texture"]) == 32
    assert np.all(np.isfinite(res["shape"] + res["texture"]))
    assert res["psnr"] is not None and res["psnr"] > 5
    assert set(res["predicted_tags"]) >= {"ball", "crate"}
    assert all(0.0 <= p <= 1.0 for p in res["predicted_tags"].values())
    assert "pillar" not in res["proposed_tags"]  # the artist's own tag is never proposed back
    # Issue 17: each predicted tag carries its own write threshold (None: suggested only); what is proposed is at or
    # over it; the answer names the asset's tags the catalogue holds as the artist's.
    assert set(res["write_thresholds"]) == set(res["predicted_tags"]) and res["artist_tags"] == ["pillar"]
    for t, th in res["write_thresholds"].items():
        want = engine.tag_model.thresholds.get(t)
        assert (th is None) == (want is None) and (th is None or abs(th - want) < 1e-4)
    assert all(p >= res["write_thresholds"][t] for t, p in res["proposed_tags"].items())
    assert not set(res["suggested_tags"]) & set(res["proposed_tags"])
    assert all(t in res["tag_reasons"] for t in res["proposed_tags"])
    train_names = {f"{k}_{c}" for k, c in support.TRAIN_ITEMS}
    for space in ("shape", "texture", "both"):
        nb = res["neighbours"][space]
        assert len(nb) == len(support.TRAIN_ITEMS)  # k=10 > library: everyone else, itself excluded
        assert {n["name"] for n in nb} == train_names
        d = [n["distance"] for n in nb]
        assert d == sorted(d)
        assert all(n["thumbnail_url"] == f"{P}/assets/{n['name']}/thumbnail" for n in nb)
    # Stored: the new asset is now in the catalogue, searchable, with its uploaded view as thumbnail.
    r = http.get(f"{P}/assets/new_pillar_blue/neighbours", params={"space": "texture", "k": 3})
    assert r.status_code == 200 and len(r.json()["neighbours"]) == 3
    png = http.get(res["thumbnail_url"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (support.IMAGE_SIZE, support.IMAGE_SIZE)
    tags = engine.catalogue.tags_of("new_pillar_blue", engine.model_id)
    assert tags["artist"] == ["pillar"] and set(tags["probabilities"]) == set(res["predicted_tags"])


def test_embed_multipart_upload(http: httpx.Client) -> None:
    data = support.upload_bundle("ball", "red")
    r = http.post(f"{P}/embed", files={"bundle": ("ball.zip", data, "application/zip")})
    assert r.status_code == 202, r.text
    status, _ = wait_job(http, r.json()["job"])
    assert status["status"] == "done"
    assert http.get(f"{P}/jobs/{r.json()['job']}/result").json()["name"] == "new_ball_red"


def test_neighbours_and_thumbnails_of_training_assets(http: httpx.Client) -> None:
    r = http.get(f"{P}/assets/ball_red/neighbours", params={"space": "shape", "k": 2})
    assert r.status_code == 200
    body = r.json()
    assert body["space"] == "shape" and len(body["neighbours"]) == 2
    assert "ball_red" not in [n["name"] for n in body["neighbours"]]
    # Training assets have no stored view: the decoder renders one, then it is stored.
    png = http.get(f"{P}/assets/crate_green/thumbnail")
    assert png.status_code == 200
    img = Image.open(io.BytesIO(png.content))
    assert img.mode == "RGBA" and img.size[0] == img.size[1] > 16
    again = http.get(f"{P}/assets/crate_green/thumbnail")
    assert again.content == png.content


def test_neighbours_carry_their_artist_tags(http: httpx.Client, engine: Engine) -> None:
    """The add-on's Similar filter matches tags on the neighbour answer itself (no extra request per row)."""
    r = http.get(f"{P}/assets/ball_red/neighbours", params={"space": "both", "k": 4})
    assert r.status_code == 200
    neighbours = api.NeighbourList.from_json(r.json()).neighbours
    assert neighbours
    for n in neighbours:
        assert n.tags == sorted(engine.catalogue.tags_of(n.name)["artist"])
    assert any(n.tags for n in neighbours)  # the training assets are tagged ("ball"/"crate", a colour)


@pytest.mark.parametrize(
    ("path", "params", "status", "words"),
    [
        ("/assets/ball_red/neighbours", {"space": "colour"}, 400, "space must be one of"),
        ("/assets/ball_red/neighbours", {"k": "many"}, 400, "k must be a whole number"),
        ("/assets/ball_red/neighbours", {"k": "0"}, 400, "k must be between"),
        ("/assets/bal_red/neighbours", {}, 404, "did you mean 'ball_red'"),
        ("/assets/nothing_like_it/thumbnail", {}, 404, "no asset named"),
        ("/jobs/0123/result", {}, 404, "no job with id"),
        ("/nope", {}, 404, "no such endpoint"),
    ],
)
def test_bad_queries_are_4xx_with_a_message(http: httpx.Client, path: str, params: dict, status: int,
                                            words: str) -> None:
    r = http.get(f"{P}{path}", params=params)
    assert r.status_code == status
    assert words in r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"", "body is empty"),
        (b"PK\x03\x04 definitely not a zip", "not a .zip archive"),
        ("drop2", "16 frames in transforms.json, the rig has 18"),
        ("bigger", "image views/00.png is 16x16, expected 64x64"),
        ("version", "bundle_version 9 is not supported"),
    ],
)
def test_bad_uploads_are_refused_and_the_service_keeps_answering(http: httpx.Client, body, words: str) -> None:
    good = support.upload_bundle("pillar", "blue")
    data = {
        "drop2": lambda: support.tampered(good, drop_frames=2),
        "bigger": lambda: support.tampered(good, transforms_patch={"w": 64, "h": 64}),
        "version": lambda: support.tampered(good, transforms_patch={"bundle_version": 9}),
    }.get(body, lambda: body)()
    r = http.post(f"{P}/embed", content=data, headers={"Content-Type": "application/zip"})
    assert r.status_code == 400
    assert r.json()["detail"].startswith("upload refused") and words in r.json()["detail"]
    assert http.get(f"{P}/info").status_code == 200


def test_oversized_upload_is_refused_while_reading(http: httpx.Client, service: Service) -> None:
    chunk = b"\0" * (1024 * 1024)

    def stream():  # chunked: no Content-Length, so the limit must be enforced while reading
        for _ in range(api.MAX_UPLOAD_BYTES // len(chunk) + 2):
            yield chunk

    try:
        r = http.post(f"{P}/embed", content=stream(), headers={"Content-Type": "application/zip"})
        assert r.status_code == 413 and "over the 32 MiB limit" in r.json()["detail"]
    except httpx.TransportError:
        pass  # the server may close the connection before the client finished sending; also a refusal
    # A declared 1 GB body is refused from its headers alone, before any of it is read (raw socket: no client
    # library sends a Content-Length it does not mean).
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as s:
        s.sendall(f"POST {P}/embed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/zip\r\n"
                  f"{api.CLIENT_HEADER}: {api.CLIENT_HEADER_VALUE}\r\n"
                  f"Content-Length: {10**9}\r\n\r\n".encode())
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            part = s.recv(65536)
            if not part:
                break
            reply += part
    text = reply.decode(errors="replace")
    assert text.startswith("HTTP/1.1 413") and "over the 32 MiB limit" in text
    assert http.get(f"{P}/info").status_code == 200


def test_train_options(http: httpx.Client) -> None:
    r = http.post(f"{P}/train", json={"what": "decoder"})
    assert r.status_code == 400 and "asset2vec train" in r.json()["detail"]
    assert http.post(f"{P}/train", content=b"{nope", headers={"Content-Type": api.JSON_TYPE}).status_code == 400
    assert http.post(f"{P}/train", content=b"{}", headers={"Content-Type": "text/plain"}).status_code == 415
    r = http.post(f"{P}/train", json={"what": "tags"})
    assert r.status_code == 202
    status, _ = wait_job(http, r.json()["job"])
    assert status["status"] == "done", status
    report = http.get(f"{P}/jobs/{r.json()['job']}/result").json()
    assert {"ball", "crate"} <= set(report["trained"])
    assert report["assets"] >= len(support.TRAIN_ITEMS)


def test_cancel_queued_and_running_embeds(engine: Engine, tmp_path) -> None:
    # A slow inversion so the job is surely running when the cancel arrives.
    slow = Engine(engine.run, engine.catalogue, invert_steps=100_000)
    with Service(slow, port=0, advertise=False) as svc, httpx.Client(base_url=svc.url, timeout=60, headers=support.CLIENT_HEADERS) as http:
        data = support.upload_bundle("pillar", "blue")
        zipped = {"Content-Type": "application/zip"}
        first = http.post(f"{P}/embed", content=data, headers=zipped).json()["job"]
        second = http.post(f"{P}/embed", content=data, headers=zipped).json()["job"]
        deadline = time.monotonic() + 60
        while http.get(f"{P}/jobs/{first}").json()["progress"] <= 0.02:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert http.get(f"{P}/jobs/{second}").json()["status"] == "queued"
        assert http.post(f"{P}/jobs/{second}/cancel").json()["status"] == "cancelled"
        http.post(f"{P}/jobs/{first}/cancel")
        status, _ = wait_job(http, first, timeout=30)
        assert status["status"] == "cancelled"
        r = http.get(f"{P}/jobs/{first}/result")
        assert r.status_code == 409 and "cancelled" in r.json()["detail"]
        assert http.get(f"{P}/info").json()["queue"] == {"queued": 0, "running": 0}


def test_token_required_when_configured(engine: Engine) -> None:
    token = "s3cret-token-for-tests-0123456789"
    with (Service(engine, port=0, token=token, advertise=False) as svc,
          httpx.Client(base_url=svc.url, headers=support.CLIENT_HEADERS) as http):
        r = http.get(f"{P}/info")
        assert r.status_code == 401 and "no token was sent" in r.json()["detail"]
        r = http.get(f"{P}/assets/ball_red/thumbnail", headers={api.TOKEN_HEADER: token[:-1] + "X"})
        assert r.status_code == 401 and "token is wrong" in r.json()["detail"]
        r = http.post(f"{P}/embed", content=b"whatever")
        assert r.status_code == 401
        ok = http.get(f"{P}/info", headers={api.TOKEN_HEADER: token})
        assert ok.status_code == 200 and ok.json()["token_required"] is True


class _BuggyEngine(Engine):
    """The real engine with a bug planted in one query, to check the safety net."""

    def neighbours(self, name: str, space: str = "both", k: int = 10) -> dict:
        raise RuntimeError("planted bug")


def test_unexpected_errors_become_500_and_serving_continues(engine: Engine) -> None:
    buggy = _BuggyEngine(engine.run, engine.catalogue)
    with Service(buggy, port=0, advertise=False) as svc, httpx.Client(base_url=svc.url, headers=support.CLIENT_HEADERS) as http:
        r = http.get(f"{P}/assets/ball_red/neighbours")
        assert r.status_code == 500 and "internal error" in r.json()["detail"]
        assert http.get(f"{P}/info").status_code == 200


def test_embed_needs_a_bundle_content_type(http: httpx.Client) -> None:
    data = support.upload_bundle("pillar", "blue")
    r = http.post(f"{P}/embed", content=data, headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and "Content-Type 'text/plain'" in r.json()["detail"]
    r = http.post(f"{P}/embed", content=data)
    assert r.status_code == 415 and "application/zip" in r.json()["detail"]


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "127.0.0.1.evil.example", "localhost:x"])
def test_loopback_service_refuses_foreign_host_headers(http: httpx.Client, host: str) -> None:
    r = http.get(f"{P}/info", headers={"Host": host})
    assert r.status_code == 400 and "is not this machine" in r.json()["detail"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost:5000", "[::1]", "[::1]:8080", "LOCALHOST"])
def test_loopback_service_accepts_loopback_host_headers(http: httpx.Client, host: str) -> None:
    assert http.get(f"{P}/info", headers={"Host": host}).status_code == 200
