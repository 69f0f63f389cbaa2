"""The add-on's backend client against a really served backend (and against servers that are not one)."""

from __future__ import annotations

import http.server
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend" / "service"))

import service_support as support  # noqa: E402

from backend.service.engine import Engine  # noqa: E402
from backend.service.server import Service  # noqa: E402
from blender_addon.client import BackendError, Cancelled, Client  # noqa: E402
from shared import api  # noqa: E402

TOKEN = "client-test-token-0123456789abcdef"


def test_info(backend: Service, engine: Engine) -> None:
    info = Client(backend.url).info()
    assert info["api_version"] == api.API_VERSION and info["model_id"] == engine.model_id


def test_system_proxies_are_ignored(backend: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy nobody listens on: a client honouring it (or NO_PROXY missing it) would fail to connect.
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(var, f"http://127.0.0.1:{support.free_port()}")
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    assert Client(backend.url).info()["api_version"] == api.API_VERSION


def test_embed_reports_progress_and_returns_codes_tags_neighbours(backend: Service) -> None:
    seen: list[tuple[float, str]] = []
    client = Client(backend.url)
    res = client.embed(support.upload_bundle("pillar", "blue", name="client_pillar"),
                       progress_cb=lambda f, m: seen.append((f, m)))
    assert res["name"] == "client_pillar" and len(res["shape"]) == 32 and len(res["texture"]) == 32
    assert seen and seen[-1][0] == 1.0 and [f for f, _ in seen] == sorted(f for f, _ in seen)
    assert all(0.0 <= p <= 1.0 for p in res["predicted_tags"].values())
    nb = res["neighbours"]["shape"]
    assert nb and all({"name", "distance", "file", "thumbnail_url"} <= set(n) for n in nb)
    assert client.neighbours("client_pillar", space="texture", k=2)["neighbours"][0]["name"] in {
        n["name"] for n in res["neighbours"]["texture"]}
    assert client.thumbnail(nb[0]["name"]).startswith(b"\x89PNG")


def test_asset_names_with_slashes_and_spaces(backend: Service) -> None:
    client = Client(backend.url)
    res = client.embed(support.upload_bundle("ball", "blue", name="props/lamp 01"))
    assert res["name"] == "props/lamp 01" and res["thumbnail_url"] == f"{api.API_PREFIX}/assets/props%2Flamp%2001/thumbnail"
    assert client.thumbnail("props/lamp 01").startswith(b"\x89PNG")
    assert client.neighbours("props/lamp 01", k=1)["name"] == "props/lamp 01"


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
        while svc.queue.stats() != {"queued": 0, "running": 0}:
            assert time.monotonic() < deadline, "the cancelled job kept running"
            time.sleep(0.05)


def test_backend_down_says_how_to_start_it() -> None:
    with pytest.raises(BackendError) as e:
        Client(f"http://127.0.0.1:{support.free_port()}").info()
    msg = str(e.value)
    assert "no Asset2Vec backend is running" in msg and "asset2vec serve" in msg


def test_token_refused_and_accepted(engine: Engine) -> None:
    with Service(engine, port=0, token=TOKEN, advertise=False) as svc:
        for token in (None, "wrong-token"):
            with pytest.raises(BackendError, match="refused the token") as e:
                Client(svc.url, token=token).info()
            assert "preferences" in str(e.value)
        assert Client(svc.url, token=TOKEN).info()["token_required"] is True


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
