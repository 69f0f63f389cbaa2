"""The request policy: what a request must look like before any endpoint reads it.

One policy for every endpoint (applied as a router dependency in :mod:`backend.service.app`), so a new
endpoint cannot forget it. It exists because a web page in the artist's browser can reach a backend on
127.0.0.1: "simple" cross-site requests (``text/plain`` or ``multipart/form-data`` bodies, no custom
header) are sent by browsers without asking the server first. The policy refuses all of them:

- an ``Origin`` header, when present, must be one of the server's own origins (``http://127.0.0.1:PORT``,
  ``http://localhost:PORT``, ``http://[::1]:PORT``, the address the connection reached, the configured
  host), else 403;
- every mutating request (POST/PUT/PATCH/DELETE) must carry :data:`shared.api.CLIENT_HEADER`: a custom header
  needs a CORS preflight, which this server never grants (no ``Access-Control-Allow-*`` header is ever sent);
- a JSON body must be sent as ``Content-Type: application/json`` (415 otherwise); an upload as one of
  :data:`UPLOAD_TYPES`.

Also here: the library folders ``POST /index`` may scan (:class:`LibraryRoots`), and :func:`redact`, which
keeps server paths out of error bodies.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from fastapi import Request

from shared import api

from .errors import ServiceError

#: Content types accepted for an uploaded bundle (a raw .zip body or a multipart form).
UPLOAD_TYPES = ("application/zip", "application/octet-stream", "multipart/form-data")
#: Methods that change something; they need the client header.
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Endpoints whose body is an upload, not JSON (paths under the API prefix).
UPLOAD_PATHS = frozenset({f"{api.API_PREFIX}/embed"})


def media_type(request: Request) -> str:
    """The request's Content-Type without parameters, lower case ('' when none)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def has_body(request: Request) -> bool:
    """Whether the request announces a body (a non-zero Content-Length, or a chunked one)."""
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "transfer-encoding" in request.headers


class RequestPolicy:
    """The policy as a FastAPI dependency (``Depends(policy)``); ``host``: the host the server was started on."""

    def __init__(self, host: str | None = None) -> None:
        self.host = (host or "").strip().lower()

    def own_origins(self, request: Request) -> set[str]:
        """The origins a page served by this backend itself would send (any port the request reached)."""
        server = request.scope.get("server") or ("127.0.0.1", None)
        port = server[1]
        names = {"127.0.0.1", "localhost", "[::1]", _bracket(str(server[0]))}
        if self.host and self.host not in ("0.0.0.0", "::"):
            names.add(_bracket(self.host))
        suffix = f":{port}" if port else ""
        return {f"{scheme}://{name}{suffix}" for name in names for scheme in ("http", "https")}

    async def __call__(self, request: Request) -> None:
        origin = request.headers.get("origin")
        if origin is not None and origin.strip().lower().rstrip("/") not in self.own_origins(request):
            raise ServiceError(
                f"request refused: it comes from a web page ({origin[:100]!r}), not from an Asset2Vec client; the "
                "backend only answers the add-on, the command line and pages it serves itself", 403)
        if request.method not in MUTATING:
            return
        if request.headers.get(api.CLIENT_HEADER, "").strip() != api.CLIENT_HEADER_VALUE:
            raise ServiceError(
                f"request refused: a {request.method} needs the header {api.CLIENT_HEADER}: "
                f"{api.CLIENT_HEADER_VALUE} (the add-on and the asset2vec tools send it; web pages cannot)", 403)
        ctype = media_type(request)
        if request.url.path in UPLOAD_PATHS:
            if ctype not in UPLOAD_TYPES:
                raise ServiceError(
                    f"upload refused: Content-Type {ctype or '(none)'!r} is not accepted; send the bundle .zip with "
                    f"Content-Type {', '.join(UPLOAD_TYPES)}", 415)
        elif has_body(request) and ctype != api.JSON_TYPE:
            raise ServiceError(
                f"request refused: Content-Type {ctype or '(none)'!r}; send the options as JSON with Content-Type "
                f"{api.JSON_TYPE}", 415)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class LibraryRoots:
    """The folders ``POST /index`` may scan: the library roots the server was started with
    (``asset2vec serve --library-root DIR``, repeatable), else the library folders the home's own models were
    built from. A folder elsewhere is refused with 403 *before* anything looks at the disk, so the answer does not
    tell whether a folder exists."""

    FLAG = "--library-root"

    def __init__(self, roots: Iterable[str | os.PathLike[str]] = ()) -> None:
        self.roots = [Path(os.path.realpath(os.path.expanduser(str(r)))) for r in roots]

    def check(self, folder: str) -> Path:
        """The resolved ``folder`` when it is inside a root; :class:`ServiceError` (403) otherwise."""
        refused = ServiceError(
            f"this backend may only read libraries under the folders it was started with; restart it with "
            f"`asset2vec serve {self.FLAG} DIR` (repeatable) naming the library's folder"
            + ("" if self.roots else " (none is configured)"), 403)
        if not self.roots or len(folder) > api.MAX_PATH_CHARS or "\x00" in folder:
            raise refused
        try:
            expanded = os.path.expanduser(folder) if folder.startswith("~") else folder
            if expanded.startswith("~") or not os.path.isabs(expanded):
                raise refused  # ~user that does not exist, or a relative path: relative to nothing the client knows
            resolved = Path(os.path.realpath(expanded))  # symlinks resolved: a link cannot lead out of a root
        except (OSError, ValueError, RuntimeError):
            raise refused from None
        if not any(resolved == root or root in resolved.parents for root in self.roots):
            raise refused
        return resolved


def home_library_roots(home: object | None) -> list[Path]:
    """The library folders a home's models were built from (``MODEL.json`` ``folder``, the interrupted index's
    folder): the home's own library, the default :class:`LibraryRoots` of a server without ``--library-root``."""
    if home is None or not hasattr(home, "model_ids"):
        return []
    from backend.lifecycle.home import read_model_file

    folders: list[str] = []
    try:
        for model_id in home.model_ids():  # type: ignore[attr-defined]
            folders.append(str(read_model_file(home.run_dir(model_id)).get("folder") or ""))  # type: ignore[attr-defined]
        folders.append(str(home.read_state().get("folder") or ""))  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - an unreadable model file adds no root; the server still starts
        pass
    return sorted({Path(f) for f in folders if f and os.path.isabs(f) and os.path.isdir(f)})


def redact(message: str, paths: Iterable[str | os.PathLike[str] | None]) -> str:
    """``message`` with the server's own folders (``paths``, the temp folder, the user's home) replaced by
    placeholders, so no error body tells a client where the backend keeps its files."""
    named: list[tuple[str, str]] = []
    for p in paths:
        if p:
            named.append((str(p), "<home>"))
    named += [(tempfile.gettempdir(), "<temp>"), (os.path.expanduser("~"), "<user home>")]
    out = message
    for path, label in sorted(named, key=lambda x: -len(x[0])):
        if len(path) > 1:
            out = out.replace(path, label)
    return out
