"""Who may connect: loopback by default, a token for anything else; refusals happen at start."""

from __future__ import annotations

import socket

import pytest

from backend.cli import main
from backend.service.auth import AuthError, check_bind, generate_token, is_loopback, token_ok
from backend.service.engine import Engine
from backend.service.server import Service


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.53", True), ("localhost", True), ("::1", True), ("[::1]", True),
     ("0.0.0.0", False), ("192.168.1.20", False), ("studio-gpu.local", False), ("", False)],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_check_bind_policy() -> None:
    check_bind("127.0.0.1", None)  # this machine only: no token needed
    check_bind("0.0.0.0", generate_token())
    with pytest.raises(AuthError, match="refusing to serve on 0.0.0.0 without a token") as e:
        check_bind("0.0.0.0", None)
    assert "--token-env" in str(e.value) and "--generate-token" in str(e.value)
    with pytest.raises(AuthError, match="too short"):
        check_bind("0.0.0.0", "abc")


def test_token_comparison() -> None:
    t = generate_token()
    assert len(t) >= 32 and generate_token() != t
    assert token_ok(None, None) and token_ok(None, "anything")
    assert token_ok(t, t)
    assert not token_ok(t, None) and not token_ok(t, "") and not token_ok(t, t + "x")


def test_service_refuses_non_loopback_without_token_before_binding(engine: Engine) -> None:
    with socket.socket() as probe:  # find a port, then check nothing ends up listening on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(AuthError, match="without a token"):
        Service(engine, host="0.0.0.0", port=port, advertise=False)
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_cli_refuses_lan_without_token(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("ASSET2VEC_TOKEN", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--run", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("asset2vec: error: refusing to serve on 0.0.0.0 without a token")
    monkeypatch.setenv("MY_TOKEN", "  ")
    assert main(["serve", "--host", "0.0.0.0", "--token-env", "MY_TOKEN", "--run", "/nonexistent"]) == 2
    assert "$MY_TOKEN is set but empty" in capsys.readouterr().err
    monkeypatch.setenv("MY_TOKEN", "short")  # set, not empty: only "too short" (issue 18)
    assert main(["serve", "--token-env", "MY_TOKEN", "--run", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert "$MY_TOKEN: the token is too short" in err and "empty" not in err


def test_cli_errors_for_missing_run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                                    tmp_path) -> None:
    monkeypatch.delenv("ASSET2VEC_RUN", raising=False)
    (tmp_path / "a-file").write_text("")
    assert main(["serve", "--home", str(tmp_path / "a-file"), "--no-zeroconf"]) == 2  # without --run: a home
    assert "the library home must be a folder" in capsys.readouterr().err
    assert main(["serve", "--run", str(tmp_path / "missing"), "--no-zeroconf"]) == 2
    err = capsys.readouterr().err
    assert "asset2vec: error:" in err and "no checkpoint.pt here" in err and "Traceback" not in err
