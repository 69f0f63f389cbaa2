"""`asset2vec bulk-tag` without --backend or --run finds the backend by itself: the local default if it answers
/info, else the one advertised over zeroconf (real servers on loopback, real mDNS on 127.0.0.1)."""

from __future__ import annotations

import pytest

from backend.cli import CommandError
from backend.commands.bulk import find_backend
from backend.service.engine import Engine
from backend.service.server import Service
from tests.backend.service import service_support as support

pytestmark = pytest.mark.slow  # serves the tiny trained run

LOOPBACK = ["127.0.0.1"]


def test_the_local_backend_is_used_when_it_answers(service: Service, capsys: pytest.CaptureFixture[str]) -> None:
    url, how = find_backend(None, local=service.url, discover_seconds=0.5, interfaces=LOOPBACK)
    assert url == service.url and how == f"using the backend on this machine at {service.url}"
    assert "looking for one on the network" not in capsys.readouterr().err  # no browse when the local one answers


def test_the_advertised_backend_is_used_when_none_answers_locally(engine: Engine) -> None:
    nobody = f"http://127.0.0.1:{support.free_port()}"
    svc = Service(engine, host="127.0.0.1", port=0, advertise=True).start_in_thread()
    try:
        assert svc.advertiser is not None and svc.advertiser.wait(15), "zeroconf registration did not finish"
        url, how = find_backend(None, local=nobody, discover_seconds=1.5, interfaces=LOOPBACK)
    finally:
        svc.stop()
    assert url == svc.url
    assert how.startswith("using the backend advertised on the network") and engine.model_id in how


def test_none_found_says_what_was_tried_and_how_to_name_one() -> None:
    nobody = f"http://127.0.0.1:{support.free_port()}"
    with pytest.raises(CommandError) as e:
        find_backend(None, local=nobody, discover_seconds=0.5, interfaces=LOOPBACK)
    msg = str(e.value)
    assert f"none answers at {nobody}" in msg and "none is advertised on the network" in msg
    assert "asset2vec serve" in msg and "--backend URL" in msg and "--run RUN_DIR" in msg


def test_a_local_backend_that_refuses_is_reported_never_replaced_by_another(engine: Engine) -> None:
    token = "s3cret-token-for-the-test-0123456789"
    svc = Service(engine, host="127.0.0.1", port=0, token=token, advertise=False).start_in_thread()
    try:
        with pytest.raises(CommandError) as e:
            find_backend("wrong-token-0123456789abcdef", local=svc.url, discover_seconds=0.5, interfaces=LOOPBACK)
        url, _ = find_backend(token, local=svc.url, discover_seconds=0.5, interfaces=LOOPBACK)
    finally:
        svc.stop()
    assert f"the backend on this machine at {svc.url} refused" in str(e.value) and url == svc.url
