"""The add-on's preferences and backend connection: registration, zeroconf Discover of a live backend on
127.0.0.1, and clear reports for a backend that is down, speaks another API version or refuses the token."""

from __future__ import annotations

import http.server
import json
import threading

import pytest
from addon_support import TOKEN, configure, support
from blender_helpers import box

from backend.service.server import Service
from blender_addon import embed_job, preferences


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
        assert bpy.ops.asset2vec.check_backend() == {"FINISHED"}
        assert embed_job.backend_info["model_id"] == engine.model_id and "model" in embed_job.last_status[1]
    finally:
        svc.stop()


def test_backend_down_is_reported_with_how_to_start_it(addon):
    bpy = addon
    configure(f"http://127.0.0.1:{support.free_port()}")
    bpy.context.view_layer.objects.active = box("Chair")
    with pytest.raises(RuntimeError, match=r"no Asset2Vec backend is running .*asset2vec serve"):
        bpy.ops.asset2vec.embed()
    assert embed_job.last_status[0] == "ERROR" and "asset2vec serve" in embed_job.last_status[1]
    assert embed_job.current is None or embed_job.current.state in embed_job.FINAL
    with pytest.raises(RuntimeError, match="no Asset2Vec backend is running"):
        bpy.ops.asset2vec.check_backend()


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
        with pytest.raises(RuntimeError, match=r"API version 99 .*update the add-on and the backend"):
            bpy.ops.asset2vec.embed()
    finally:
        server.shutdown()
        server.server_close()


def test_token_refused_then_accepted(addon, engine):
    bpy = addon
    with Service(engine, port=0, token=TOKEN, advertise=False) as svc:
        bpy.context.view_layer.objects.active = box("Chair")
        configure(svc.url, token="wrong-token-0123456789abcdef")
        with pytest.raises(RuntimeError, match="refused the token: enter the token"):
            bpy.ops.asset2vec.embed()
        configure(svc.url, token="")
        with pytest.raises(RuntimeError, match="refused the token"):
            bpy.ops.asset2vec.check_backend()
        configure(svc.url, token=TOKEN)
        assert bpy.ops.asset2vec.check_backend() == {"FINISHED"}
        assert embed_job.backend_info["token_required"] is True
