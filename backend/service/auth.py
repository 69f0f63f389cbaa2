"""Who may talk to the backend: loopback by default, a shared token for anything else.

The policy: binding to a loopback address needs no token (only this machine can connect). Binding
to any other interface (a studio GPU box on the LAN) is refused unless a token is configured;
every request must then carry it in :data:`shared.api.TOKEN_HEADER`. Tokens are compared in
constant time so response timing does not leak them.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets

from shared import api


class AuthError(Exception):
    """The server cannot start with this host/token combination; the message says what to do."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to a LAN address, so treat it as exposed


def generate_token() -> str:
    """A new random token (URL-safe, 256 bits)."""
    return secrets.token_urlsafe(32)


def token_from_env(var: str) -> str | None:
    """The token in environment variable ``var``; ``None`` when unset or blank."""
    value = os.environ.get(var, "").strip()
    return value or None


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond loopback without a token (raises :class:`AuthError`)."""
    if token is not None and len(token) < 16:
        raise AuthError("the token is too short: use at least 16 characters (or --generate-token for a random one)")
    if not is_loopback(host) and not token:
        raise AuthError(
            f"refusing to serve on {host} without a token: anyone on the network could use the backend. "
            f"Set a token in an environment variable and pass its name with --token-env (e.g. "
            f"ASSET2VEC_TOKEN=... asset2vec serve --host {host} --token-env ASSET2VEC_TOKEN), or pass "
            f"--generate-token; or serve on 127.0.0.1 (the default) for this machine only."
        )


def token_ok(expected: str | None, given: str | None) -> bool:
    """Whether a request's token matches (always true when no token is configured)."""
    if expected is None:
        return True
    if given is None:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


HEADER = api.TOKEN_HEADER
