"""The add-on's preferences and backend connection: registration, zeroconf Discover of a live backend on
127.0.0.1, clear reports for a backend that is down, speaks another API version or refuses the token, and
Blender's main thread never waiting for the backend (the checks run in worker threads)."""

from __future__ import annotations

import http.server
import json
import re
import socket
import threading
import time

import pytest

from backend.service.server import Service
from blender_addon import backend_check, embed_job, preferences, session
from tests.blender_addon.addon_support import TOKEN, configure, support
from tests.blender_addon.blender_helpers import box

pytestmark = pytest.mark.slow  # trains a model (or serves the tiny trained run); Embed captures with Cycles


def _check(bpy) -> backend_check.BackendCheck:
    """Press Check Backend (it returns at once) and wait for the check's worker thread, as the timer would."""
    assert bpy.ops.asset2vec.check_backend() == {"FINISHED"}
    return session.get().pump(backend_check.SLOT, timeout=30)


def _embed_fails(bpy, pattern: str) -> embed_job.EmbedJob:
    """Press Embed: the backend check runs in the job's worker thread, so the failure is reported by the operator
    when the check has already failed before the first capture (a refused connection), else on the status line."""
    try:
        assert bpy.ops.asset2vec.embed() == {"FINISHED"}
    except RuntimeError as e:  # the operator's ERROR report
        assert re.search(pattern, str(e)), str(e)
    job = embed_job.pump(timeout=60)
    assert job.state == embed_job.FAILED and re.search(pattern, job.message), job.message
    assert session.get().status["embed"] == ("ERROR", job.message)
    return job


def test_register_creates_preferences_and_unregister_removes_them(blender):
    import blender_addon

    blender_addon.register()
    try:
        prefs = preferences.get()
        assert prefs is not None and prefs.bl_rna.identifier == "Asset2VecPreferences"
        assert preferences.ADDON_ID == "blender_addon" and prefs.backend_url == "http://127.0.0.1:8765"
        assert prefs.bl_rna.properties["token"].subtype == "PASSWORD"
        for panel in ("ASSET2VEC_PT_main", "ASSET2VEC_PT_tags", "ASSET2VEC_PT_similar", "ASSET2VEC_PT_capture"):
            assert hasattr(blender.types, panel)
    finally:
        blender_addon.unregister()
    assert preferences.get() is None
    assert not hasattr(blender.types, "ASSET2VEC_PT_main")


def test_discover_finds_the_live_backend_on_loopback_and_use_sets_the_url(addon, engine):
    bpy = addon
    prefs = configure("http://127.0.0.1:1")
    svc = Service(engine, host="127.0.0.1", port=0, advertise=True).start_in_thread()
    try:
        assert svc.advertiser is not None and svc.advertiser.wait(15)
        assert bpy.ops.asset2vec.discover(interfaces="127.0.0.1", timeout=1.5) == {"FINISHED"}
        assert prefs.discover_message.startswith("looking for backends")  # browsing in the background
        preferences.wait_for_discovery()  # what the timer does once the browse ends
        assert prefs.discover_message.startswith("found")
        urls = [item.url for item in prefs.discovered]
        assert svc.url in urls, urls
        index = urls.index(svc.url)
        assert prefs.discovered[index].model == engine.model_id and not prefs.discovered[index].token_required
        assert bpy.ops.asset2vec.use_backend(index=index) == {"FINISHED"}
        assert prefs.backend_url == svc.url
        assert _check(bpy).state == embed_job.DONE
        assert session.get().backend_info.model_id == engine.model_id and "model" in session.get().status["embed"][1]
    finally:
        svc.stop()


def test_the_url_the_server_prints_works_in_the_preferences(addon, backend):
    bpy = addon
    configure(f"{backend.url}/v1/")  # pasted as `asset2vec serve` prints it
    assert preferences.connection()[0] == backend.url
    assert _check(bpy).state == embed_job.DONE, session.get().status["embed"]


def test_backend_down_is_reported_with_how_to_start_it(addon):
    bpy = addon
    configure(f"http://127.0.0.1:{support.free_port()}")
    bpy.context.view_layer.objects.active = box("Chair")
    _embed_fails(bpy, r"no Asset2Vec backend is running .*asset2vec serve")
    assert session.get().backend_info is None
    assert _check(bpy).state == embed_job.FAILED
    level, message = session.get().status["embed"]
    assert level == "ERROR" and message.startswith("no Asset2Vec backend is running")


class _OtherVersion(http.server.BaseHTTPRequestHandler):
    """A server that answers like a backend of a future API version."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = json.dumps({"api_version": 99, "model_id": "future"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_wrong_api_version_is_reported(addon):
    bpy = addon
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OtherVersion)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        configure(f"http://127.0.0.1:{server.server_address[1]}")
        bpy.context.view_layer.objects.active = box("Chair")
        _embed_fails(bpy, r"API version 99 .*update the add-on and the backend")
    finally:
        server.shutdown()
        server.server_close()


def test_token_refused_then_accepted(addon, engine):
    bpy = addon
    with Service(engine, port=0, token=TOKEN, advertise=False) as svc:
        bpy.context.view_layer.objects.active = box("Chair")
        configure(svc.url, token="wrong-token-0123456789abcdef")
        _embed_fails(bpy, "refused the token: enter the token")
        configure(svc.url, token="")
        assert _check(bpy).state == embed_job.FAILED and "refused the token" in session.get().status["embed"][1]
        configure(svc.url, token=TOKEN)
        assert _check(bpy).state == embed_job.DONE
        assert session.get().backend_info.token_required is True


def test_embed_never_blocks_the_main_thread_on_a_backend_that_does_not_answer(addon):
    """A backend that accepts connections but never answers: Embed and Check Backend return at once, every
    timer step stays short while the worker threads wait, and the wait ends with a clear message."""
    bpy = addon
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel accepts connections; nobody ever reads or answers
        prefs = configure(f"http://127.0.0.1:{silent.getsockname()[1]}")
        prefs.timeout = 60.0
        bpy.context.view_layer.objects.active = box("Chair")

        t0 = time.monotonic()
        assert bpy.ops.asset2vec.check_backend() == {"FINISHED"}
        assert time.monotonic() - t0 < 1.0  # no network on the main thread
        check = session.get().task(backend_check.SLOT)
        assert check.running and session.timer_registered()

        assert bpy.ops.asset2vec.embed() == {"FINISHED"}  # captures the first asset; the check waits in the worker
        job = embed_job.current()
        steps: list[float] = []
        while job.running or check.running:
            t = time.monotonic()
            session.get().step()  # what the timer does
            steps.append(time.monotonic() - t)
            assert time.monotonic() - t0 < 30, "the check should give up after its short timeout"
            time.sleep(0.05)
        assert len(steps) > 10 and max(steps) < 0.5, max(steps)
        for task in (check, job):
            assert task.state == embed_job.FAILED and "did not answer" in task.message, task.message
        assert session.get().status["embed"][0] == "ERROR"
