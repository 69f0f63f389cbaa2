"""The shared backend client (used by the add-on, bulk workers, commands) against a really served backend,
and against servers that are not one. Every answer arrives typed (:mod:`shared.api`)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator

import pytest

from backend.service.engine import Engine
from backend.service.server import Service
from shared import api
from shared.client import BackendBusy, BackendError, Cancelled, Client, normalize_url
from tests.backend.service import service_support as support

pytestmark = pytest.mark.slow  # trains a model (or serves the tiny trained run)

TOKEN = "client-test-token-0123456789abcdef"


# ``engine`` and ``backend``: the live backend of tests/conftest.py (the tiny trained run served on loopback).


@pytest.mark.slow  # serves the tiny trained run
def test_info(backend: Service, engine: Engine) -> None:
    info = Client(backend.url).info()
    assert isinstance(info, api.ServerInfo)
    assert info.api_version == api.API_VERSION and info.model_id == engine.model_id
    assert info.queue == api.QueueStats(queued=0, running=0) and info.tags and info.model is not None


@pytest.mark.slow  # serves the tiny trained run
def test_system_proxies_are_ignored(backend: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy nobody listens on: a client honouring it (or NO_PROXY missing it) would fail to connect.
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(var, f"http://127.0.0.1:{support.free_port()}")
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    assert Client(backend.url).info().api_version == api.API_VERSION


@pytest.mark.slow  # serves the tiny trained run
def test_embed_reports_progress_and_returns_codes_tags_neighbours(backend: Service) -> None:
    seen: list[tuple[float, str]] = []
    client = Client(backend.url)
    res = client.embed(support.upload_bundle("pillar", "blue", name="client_pillar"),
                       progress_cb=lambda f, m: seen.append((f, m)))
    assert isinstance(res, api.EmbedResult)
    assert res.name == "client_pillar" and len(res.shape) == 32 and len(res.texture) == 32
    assert res.source_file == "//props.blend" and res.asset_name == "pillar.001"
    assert seen and seen[-1][0] == 1.0 and [f for f, _ in seen] == sorted(f for f, _ in seen)
    assert all(0.0 <= p <= 1.0 for p in res.predicted_tags.values())
    # Proposals are computed once, on the backend: each at or over its own write threshold, never the asset's own
    # tags; a tag over its write threshold that is not proposed is suggested instead (beaten in its exclusive group).
    for t, p in res.predicted_tags.items():
        over = res.threshold_of(t) is not None and p >= res.threshold_of(t) and t != "pillar"
        assert (t in res.proposed_tags) <= over, (t, p, res.tag_reasons.get(t))
        if over and t not in res.proposed_tags:
            assert t in res.suggested_tags, (t, res.tag_reasons.get(t))
        assert res.proposed_tags.get(t, p) == p
    nb = res.neighbours["shape"]
    assert nb and all(isinstance(n, api.Neighbour) and n.source_file is not None and n.thumbnail_url for n in nb)
    found = client.neighbours("client_pillar", space="texture", k=2)
    assert found.space == "texture" and found.neighbours[0].name in {n.name for n in res.neighbours["texture"]}
    assert client.thumbnail(nb[0].name).startswith(b"\x89PNG")


@pytest.mark.slow  # serves the tiny trained run
def test_asset_names_with_slashes_and_spaces(backend: Service) -> None:
    client = Client(backend.url)
    res = client.embed(support.upload_bundle("ball", "blue", name="props/lamp 01"))
    assert res.name == "props/lamp 01" and res.thumbnail_url == f"{api.API_PREFIX}/assets/props%2Flamp%2001/thumbnail"
    assert client.thumbnail("props/lamp 01").startswith(b"\x89PNG")
    assert client.neighbours("props/lamp 01", k=1).name == "props/lamp 01"


@pytest.mark.slow  # serves the tiny trained run
def test_cancel(engine: Engine) -> None:
    slow = Engine(engine.run, engine.catalogue, invert_steps=100_000)
    with Service(slow, port=0, advertise=False) as svc:
        client = Client(svc.url)
        cancel = threading.Event()

        def progress(fraction: float, message: str) -> None:
            if fraction > 0.02:  # the inversion is running: the artist presses Esc
                cancel.set()

        with pytest.raises(Cancelled):
            client.embed(support.upload_bundle("ball", "red"), progress_cb=progress, cancel=cancel, timeout=120)
        # The backend was told: the job ends as cancelled and the queue is free again.
        deadline = time.monotonic() + 30
        while svc.queue.stats() != api.QueueStats(queued=0, running=0):
            assert time.monotonic() < deadline, "the cancelled job kept running"
            time.sleep(0.05)


def test_backend_down_says_how_to_start_it() -> None:
    with pytest.raises(BackendError) as e:
        Client(f"http://127.0.0.1:{support.free_port()}").info()
    msg = str(e.value)
    assert "no Asset2Vec backend is running" in msg and "asset2vec serve" in msg


@pytest.mark.slow  # serves the tiny trained run
def test_token_refused_and_accepted(engine: Engine) -> None:
    with Service(engine, port=0, token=TOKEN, advertise=False) as svc:
        for token in (None, "wrong-token"):
            with pytest.raises(BackendError, match="refused the token") as e:
                Client(svc.url, token=token).info()
            assert "preferences" in str(e.value)
        assert Client(svc.url, token=TOKEN).info().token_required is True


@pytest.mark.slow  # serves the tiny trained run
def test_upload_refused_with_the_servers_reason(backend: Service) -> None:
    client = Client(backend.url)
    with pytest.raises(BackendError) as e:
        client.embed(b"this is not a zip")
    assert str(e.value) == "upload refused: upload is not a .zip archive of a view bundle"
    bad = support.tampered(support.upload_bundle("pillar", "blue"), drop_frames=1)
    with pytest.raises(BackendError, match="upload refused: .*17 frames"):
        client.embed(bad)
    with pytest.raises(BackendError, match="over the 32 MiB limit"):  # refused before sending anything
        client.embed(b"\0" * (api.MAX_UPLOAD_BYTES + 1))


@pytest.mark.slow  # serves the tiny trained run
def test_unknown_asset_and_bad_url(backend: Service) -> None:
    with pytest.raises(BackendError, match="did you mean 'ball_red'"):
        Client(backend.url).neighbours("bal_red")
    with pytest.raises(BackendError, match="not a backend URL"):
        Client("ftp://somewhere")


class _Fake(http.server.BaseHTTPRequestHandler):
    """A real HTTP server that is not this Asset2Vec: answers from a class-level table."""

    routes: dict[str, tuple[int, bytes]] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        status, body = self.routes.get(self.path, (404, b"<html>not found</html>"))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def other_server() -> Iterator[tuple[str, dict[str, tuple[int, bytes]]]]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Fake)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    _Fake.routes = {}
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Fake.routes
    httpd.shutdown()
    httpd.server_close()


def test_other_api_versions_and_other_servers(other_server) -> None:
    url, routes = other_server
    with pytest.raises(BackendError, match="has no Asset2Vec API /v1") as e:  # nothing at /v1: a future backend
        Client(url).info()
    assert "update the add-on and the backend" in str(e.value)
    routes[f"{api.API_PREFIX}/info"] = (200, json.dumps({"api_version": 2, "model_id": "m"}).encode())
    with pytest.raises(BackendError, match="speaks API version 2 but this add-on speaks version 1"):
        Client(url).info()
    with pytest.raises(BackendError, match="speaks API version 2"):  # checked before any upload
        Client(url).embed(b"zip")
    routes[f"{api.API_PREFIX}/info"] = (200, b"<html>a web page</html>")
    with pytest.raises(BackendError, match="is not an Asset2Vec backend"):
        Client(url).info()


def test_the_url_the_server_prints_is_accepted_with_or_without_v1(other_server) -> None:
    url, routes = other_server
    routes[f"{api.API_PREFIX}/info"] = (200, json.dumps({"api_version": 1, "model_id": "m"}).encode())
    # `asset2vec serve` prints ".../v1": pasted as is, with a slash, or typed without a scheme, it is the same backend.
    host = url.removeprefix("http://")
    for typed in (url, f"{url}/", f"{url}/v1", f" {url}/v1/ ", f"{host}/v1", host):
        client = Client(typed)
        assert client.url == url, typed
        assert client.info().model_id == "m"  # reached /v1/info (not /v1/v1/info: a 404)
    assert normalize_url("http://studio:8765/asset2vec/V1/") == "http://studio:8765/asset2vec"  # a proxy's prefix
    assert normalize_url("https://v1:8765") == "https://v1:8765"  # a host named v1 is a host
    with pytest.raises(BackendError, match="not a backend URL"):
        normalize_url("ftp://somewhere/v1")


@pytest.mark.slow  # serves the tiny trained run
def test_review_answers_are_typed(backend: Service) -> None:
    client = Client(backend.url)
    queue = client.review_queue(3)
    assert isinstance(queue, api.ReviewQueue) and queue.items and len(queue.items) <= 3
    item = queue.items[0]
    assert isinstance(item, api.ReviewItem) and item.thumbnail_url and 0.0 <= item.probability <= 1.0
    reply = client.review_answer(item.name, item.tag, accept=False, limit=2)
    assert isinstance(reply, api.ReviewResult) and reply.name == item.name and reply.accepted is False
    assert all(isinstance(i, api.ReviewItem) for i in reply.queue)


@pytest.mark.slow  # serves the tiny trained run
def test_job_status_and_train_result_are_typed(backend: Service) -> None:
    client = Client(backend.url)
    job = client.start_train("tags")
    report = client.train("tags")
    assert isinstance(report, api.TrainResult) and report.what == "tags" and {"ball", "crate"} <= set(report.trained)
    status = client.job(job)
    assert isinstance(status, api.JobStatus) and status.kind == "train" and status.id == job


@pytest.mark.slow  # serves the tiny trained run
def test_a_busy_backend_is_a_typed_error(engine: Engine) -> None:
    slow = Engine(engine.run, engine.catalogue, invert_steps=100_000)
    with Service(slow, port=0, advertise=False) as svc:
        svc.queue.max_queued = 1
        client = Client(svc.url)
        data = support.upload_bundle("ball", "red")
        started = [client.start_embed(data)]
        try:
            deadline = time.monotonic() + 30
            while client.job(started[0]).status != api.RUNNING:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            started.append(client.start_embed(data))  # waits: the queue is now full
            with pytest.raises(BackendBusy, match="the backend is busy: the job queue is full") as e:
                client.start_embed(data)
            assert e.value.status == 503
        finally:
            for job in started:
                client.cancel_job(job)


def test_an_answer_that_breaks_the_contract_is_a_clear_error(other_server) -> None:
    url, routes = other_server
    routes[f"{api.API_PREFIX}/info"] = (200, json.dumps({"api_version": 1, "model_id": 7}).encode())
    with pytest.raises(BackendError, match=r"cannot read \(ServerInfo.model_id: expected a string, got int 7\)"):
        Client(url).info()


@pytest.mark.slow  # serves the tiny trained run
def test_cancel_of_a_job_already_gone_still_raises_cancelled(backend: Service) -> None:
    # The backend no longer knows the job (404 on cancel): the user cancelled, so "cancelled", not a failure.
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        Client(backend.url).wait("no-such-job", cancel=cancel)
