"""The client for the Asset2Vec backend: standard-library HTTP plus zeroconf discovery.

No bpy, no torch, no numpy: the add-on calls it from worker threads (the UI never freezes), and the
same client serves headless bulk workers, the backend's own commands, benchmarks and tests. Every
answer is parsed once into the typed contract of :mod:`shared.api`; every failure is a
:class:`BackendError` whose message tells an artist what to do (start the backend, fix the token,
update the add-on, capture smaller views...). A backend that is busy (queue full, a model being
built or switched) raises :class:`BackendBusy`; a cancelled job raises :class:`Cancelled`.

    client = Client("http://127.0.0.1:8765", token=None)
    client.info()                                   # api.ServerInfo: model_id, preset, device, tags, ...
    result = client.embed(zip_bytes, progress_cb=lambda f, msg: ..., cancel=threading.Event())  # api.EmbedResult
    client.neighbours("chair_03", space="shape", k=10)  # api.NeighbourList
    job_id = client.start_index("/studio/library")  # build a model from a library folder (background job)
    client.models(); client.restore_model()         # api.ModelsList; switch back to the previous model
    png = client.thumbnail("chair_03")
    client.delete_asset("chair_03")                 # api.Forgotten: out of the catalogue (the .blend untouched)
    discover(timeout=2.0)                           # [Discovered(name, url, txt), ...] on the network
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar
from urllib.parse import quote, urlencode, urlsplit

from . import api

DEFAULT_URL = f"http://127.0.0.1:{api.DEFAULT_PORT}"
START_HINT = (
    "start it with `asset2vec serve` (in a terminal on that machine; it serves the starter model until a "
    "library model is built)"
)

ProgressCallback = Callable[[float, str], None]
W = TypeVar("W", bound=api.Wire)


#: Seconds a model restore may take (loading the model, fitting recently embedded assets into it).
RESTORE_TIMEOUT = 600.0


class BackendError(Exception):
    """Talking to the backend failed; the message says why and what to do. ``status``: the HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class BackendBusy(BackendError):
    """The backend cannot take this now (job queue full, a model being built or switched): retry later."""


class Cancelled(BackendError):
    """The user cancelled the job; the backend was told to stop it."""


class Discovered(NamedTuple):
    """A backend found on the network: instance ``name``, base ``url``, zeroconf ``txt`` records
    (``api``, ``model``, ``device``, ``token``: "1" when a token is required)."""

    name: str
    url: str
    txt: dict[str, str]


#: A trailing API version segment (``/v1``): the form the server prints, stripped by :func:`normalize_url`.
_VERSION_SUFFIX = re.compile(r"/v\d+$", re.IGNORECASE)


def normalize_url(url: str) -> str:
    """The backend's base URL (``http://host:port``) from what a user typed or pasted.

    Accepts a missing scheme (``127.0.0.1:8765``), trailing slashes and the API version the server prints
    (``http://host:8765/v1/``): the client adds :data:`shared.api.API_PREFIX` itself. Any other path (a reverse
    proxy's prefix) is kept. Raises :class:`BackendError` for something that is no HTTP URL.
    """
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BackendError(f"{url!r} is not a backend URL; expected something like {DEFAULT_URL}")
    path = _VERSION_SUFFIX.sub("", parts.path).rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{path}"


class Client:
    """A connection to one backend. Cheap to create; holds no open sockets between calls.

    ``url`` is the base URL (``http://host:port``, normalised by :func:`normalize_url`: the ``/v1`` the server
    prints may be pasted too); ``token`` is needed when the backend serves
    beyond loopback; ``timeout`` bounds every single HTTP request (not the whole job).
    """

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, timeout: float = 30.0) -> None:
        self.url, self.token, self.timeout = normalize_url(url), (token or None), timeout
        self._checked = False

    # -- API calls ---------------------------------------------------------------------------

    def info(self) -> api.ServerInfo:
        """The backend's description; raises :class:`BackendError` if it speaks another API version."""
        try:
            info = self._json("GET", "/info")
        except _HTTPFailure as e:
            if e.status == 404:
                raise BackendError(
                    f"the server at {self.url} has no Asset2Vec API {api.API_PREFIX} (another API version, or not an "
                    f"Asset2Vec backend): update the add-on and the backend to the same release", 404
                ) from None
            raise e.error() from None
        version = info.get("api_version")
        if version != api.API_VERSION:
            raise BackendError(
                f"the backend at {self.url} speaks API version {version!r} but this add-on speaks version "
                f"{api.API_VERSION}: update the add-on and the backend to the same release"
            )
        parsed = self._parse(api.ServerInfo, info, "/info")
        self._checked = True
        return parsed

    def start_embed(self, bundle_zip: bytes) -> str:
        """Upload a view bundle (.zip bytes) and return the id of the embedding job."""
        if len(bundle_zip) > api.MAX_UPLOAD_BYTES:
            raise BackendError(
                f"upload refused: the bundle is {len(bundle_zip) / 2**20:.1f} MiB, over the "
                f"{api.MAX_UPLOAD_BYTES // 2**20} MiB limit; capture the views at a smaller image size"
            )
        self._ensure_checked()
        reply = self._call_json("POST", "/embed", body=bundle_zip, content_type="application/zip", upload=True)
        return self._parse(api.JobAccepted, reply, "/embed").job

    def start_train(self, what: str = "tags") -> str:
        """Start a training job on the backend (``what="tags"``: refit tag classifiers); returns its id."""
        return self._start("/train", api.TrainRequest(what=what))

    def job(self, job_id: str) -> api.JobStatus:
        """The job's status: ``status`` (queued/running/done/failed/cancelled), ``progress``, ``message``."""
        return self._parse(api.JobStatus, self._call_json("GET", f"/jobs/{quote(job_id, safe='')}"), "/jobs")

    def cancel_job(self, job_id: str) -> api.JobStatus:
        """Ask the backend to cancel a job (queued jobs stop at once, running ones at their next check)."""
        reply = self._call_json("POST", f"/jobs/{quote(job_id, safe='')}/cancel")
        return self._parse(api.JobStatus, reply, "/jobs/cancel")

    def result(self, job_id: str) -> dict[str, Any]:
        """The raw result of a finished job; parse it with the class of the job's kind (e.g.
        :meth:`shared.api.EmbedResult.from_json`, :func:`shared.api.refine_outcome`), or use :meth:`embed_result`."""
        return self._call_json("GET", f"/jobs/{quote(job_id, safe='')}/result")

    def embed_result(self, job_id: str) -> api.EmbedResult | api.RefineDropped:
        """The result of a finished embed or refinement job."""
        try:
            return api.refine_outcome(self.result(job_id))
        except api.ApiError as e:
            raise self._broken(f"/jobs/{job_id}/result", e) from None

    def wait(
        self,
        job_id: str,
        progress_cb: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        poll: float = 0.25,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Poll a job until it finishes; return its raw result (see :meth:`result`).

        ``progress_cb(fraction, message)`` is called on every change; setting ``cancel`` cancels
        the job on the backend and raises :class:`Cancelled`. A failed job raises
        :class:`BackendError` with the backend's message.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last: tuple[float, str] | None = None
        while True:
            if cancel is not None and cancel.is_set():
                try:
                    self.cancel_job(job_id)
                except BackendError:
                    pass  # the job is already gone or the backend unreachable: the user still cancelled
                raise Cancelled("cancelled: the backend was told to stop the job")
            status = self.job(job_id)
            now = (status.progress, status.message)
            if progress_cb is not None and now != last:
                progress_cb(*now)
                last = now
            if status.status == api.DONE:
                return self.result(job_id)
            if status.status == api.FAILED:
                raise BackendError(f"the backend could not finish the job: {status.error or status.message}")
            if status.status == api.CANCELLED:
                raise Cancelled(f"the job was cancelled on the backend ({status.message})")
            if deadline is not None and time.monotonic() > deadline:
                raise BackendError(
                    f"the job did not finish within {timeout:.0f} s; it is still {status.status} on the backend")
            # Sleep on the cancel flag so a cancel is noticed at once, not after the poll interval.
            if cancel is not None:
                cancel.wait(poll)
            else:
                time.sleep(poll)

    def embed(
        self,
        bundle_zip: bytes,
        progress_cb: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        timeout: float | None = None,
    ) -> api.EmbedResult:
        """Upload a bundle, wait for its embedding and return the result: code, ``predicted_tags``,
        ``proposed_tags`` and ``neighbours`` per space (with an instant encoder also ``refine_job``)."""
        raw = self.wait(self.start_embed(bundle_zip), progress_cb, cancel, timeout=timeout)
        return self._parse(api.EmbedResult, raw, "/embed result")

    def train(
        self, what: str = "tags", progress_cb: ProgressCallback | None = None, cancel: threading.Event | None = None
    ) -> api.TrainResult | api.BuildResult:
        """Run a training job on the backend and return its report (a decoder: the new model's build)."""
        raw = self.wait(self.start_train(what), progress_cb, cancel)
        return self._parse(api.BuildResult if what == "decoder" else api.TrainResult, raw, "/train result")

    def start_index(self, folder: str, **options: int | float) -> str:
        """Build a new model from the library ``folder`` (a path on the backend's machine) in the background:
        capture, train, embed, tags, neighbours; the backend switches to it when done. ``options``: ``steps``,
        ``minutes``, ``size``, ``samples``. Returns the job id."""
        return self._start("/index", api.IndexRequest(folder=folder, **options))  # type: ignore[arg-type]

    def start_retrain(self) -> str:
        """Retrain the decoder on every asset the backend has stored, in the background; returns the job id."""
        return self.start_train("decoder")

    def models(self) -> api.ModelsList:
        """The backend's models: which is active, which was active before, and each one's record."""
        self._ensure_checked()
        return self._parse(api.ModelsList, self._call_json("GET", "/models"), "/models")

    def restore_model(self, model_id: str | None = None) -> api.ModelInfo:
        """Switch the backend back to ``model_id`` (None: the previously active model); returns the new info.

        Slow (the backend loads the model and fits the assets embedded since into it): call it off
        Blender's main thread; it waits up to :data:`RESTORE_TIMEOUT` seconds.
        """
        self._ensure_checked()
        body = json.dumps(api.RestoreRequest(model_id=model_id or None).to_json()).encode()
        # A per-call timeout, not a swap of self.timeout: a client may be shared across threads.
        reply = self._call_json("POST", "/models/restore", body=body, content_type="application/json",
                                timeout=max(self.timeout, RESTORE_TIMEOUT))
        return self._parse(api.ModelInfo, reply, "/models/restore")

    def neighbours(self, name: str, space: str = "both", k: int = 10) -> api.NeighbourList:
        """The ``k`` nearest assets to ``name`` in ``shape``, ``texture`` or ``both`` spaces."""
        self._ensure_checked()
        query = urlencode({"space": space, "k": k})
        reply = self._call_json("GET", f"/assets/{quote(name, safe='')}/neighbours?{query}")
        return self._parse(api.NeighbourList, reply, "/neighbours")

    def delete_asset(self, name: str) -> api.Forgotten:
        """Forget a catalogued asset on the backend (``DELETE /assets/{name}``): its codes, tags, review answers and
        stored views go; the artist's .blend is not touched. An unknown name raises :class:`BackendError` (404)
        naming close matches."""
        self._ensure_checked()
        reply = self._call_json("DELETE", f"/assets/{quote(name, safe='')}")
        return self._parse(api.Forgotten, reply, "/assets (delete)")

    def thumbnail(self, name: str) -> bytes:
        """The PNG thumbnail of a catalogued asset."""
        self._ensure_checked()
        return self._call("GET", f"/assets/{quote(name, safe='')}/thumbnail")[1]

    def review_queue(self, limit: int = 10) -> api.ReviewQueue:
        """The tag predictions the backend is least sure of (``message`` says why the queue is empty)."""
        self._ensure_checked()
        return self._parse(api.ReviewQueue, self._call_json("GET", f"/review?{urlencode({'limit': limit})}"),
                           "/review")

    def review_answer(self, name: str, tag: str, accept: bool, limit: int = 10) -> api.ReviewResult:
        """Answer one review question; the backend stores it, retrains its tag classifiers and returns
        the asset's new ``probability`` for the tag, a ``message`` and the next ``queue`` items."""
        self._ensure_checked()
        request = api.ReviewRequest(name=name, tag=tag, accept=bool(accept), limit=limit)
        body = json.dumps(request.to_json()).encode()
        reply = self._call_json("POST", "/review", body=body, content_type="application/json")
        return self._parse(api.ReviewResult, reply, "/review")

    # -- plumbing ----------------------------------------------------------------------------

    def _ensure_checked(self) -> None:
        if not self._checked:
            self.info()

    def _start(self, path: str, request: api.Wire) -> str:
        """POST a JSON request that starts a job; returns the job's id."""
        self._ensure_checked()
        body = json.dumps(request.to_json()).encode()
        reply = self._call_json("POST", path, body=body, content_type="application/json")
        return self._parse(api.JobAccepted, reply, path).job

    def _parse(self, cls: type[W], data: Any, what: str) -> W:
        """``cls.from_json(data)``; a reply that breaks the contract is a :class:`BackendError`."""
        try:
            return cls.from_json(data)
        except api.ApiError as e:
            raise self._broken(what, e) from None

    def _broken(self, what: str, e: api.ApiError) -> BackendError:
        return BackendError(
            f"the backend at {self.url} gave an answer to {what} this add-on cannot read ({e}): update the add-on "
            f"and the backend to the same release"
        )

    def _call_json(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        try:
            return self._json(method, path, **kw)
        except _HTTPFailure as e:
            raise e.error() from None

    def _json(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        status, data = self._call(method, path, raw_errors=True, **kw)
        try:
            reply = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BackendError(f"the server at {self.url} is not an Asset2Vec backend (its answer is not JSON)") from None
        if not isinstance(reply, dict):
            raise BackendError(f"the server at {self.url} gave an unexpected answer to {path}")
        return reply

    def _call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str | None = None,
        upload: bool = False,
        raw_errors: bool = False,
        timeout: float | None = None,
    ) -> tuple[int, bytes]:
        """One HTTP request; returns ``(status, body)`` or raises (see :class:`_HTTPFailure`).
        ``timeout``: this request's limit in seconds (default ``self.timeout``)."""
        timeout = self.timeout if timeout is None else timeout
        req = urllib.request.Request(f"{self.url}{api.API_PREFIX}{path}", data=body, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        # The request policy's header: the backend refuses a mutating request without it (a web page cannot send it).
        req.add_header(api.CLIENT_HEADER, api.CLIENT_HEADER_VALUE)
        if self.token:
            req.add_header(api.TOKEN_HEADER, self.token)
        try:
            with _OPENER.open(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            detail, code = _error_reply(e)
            failure = _HTTPFailure(self.url, e.code, detail, upload, code)
            if raw_errors:
                raise failure from None
            raise failure.error() from None
        except urllib.error.URLError as e:
            raise self._unreachable(e.reason) from None
        except TimeoutError:
            raise BackendError(
                f"the backend at {self.url} did not answer within {timeout:.0f} s (busy or unreachable); "
                f"try again, or check that it is running"
            ) from None
        except (ConnectionError, OSError) as e:
            raise self._unreachable(e) from None

    def _unreachable(self, reason: object) -> BackendError:
        if isinstance(reason, ConnectionRefusedError):
            return BackendError(f"no Asset2Vec backend is running at {self.url}: {START_HINT}")
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return BackendError(f"the backend at {self.url} did not answer (busy or unreachable); check it is running")
        if isinstance(reason, socket.gaierror):
            return BackendError(f"cannot find the host in {self.url} ({reason.strerror}); check the backend URL")
        return BackendError(f"cannot reach the backend at {self.url} ({reason}); check it is running: {START_HINT}")


class _HTTPFailure(Exception):
    """An HTTP error reply, kept raw until the caller decides how to phrase it."""

    def __init__(self, url: str, status: int, detail: str, upload: bool, code: str | None = None) -> None:
        super().__init__(detail)
        self.url, self.status, self.detail, self.upload, self.code = url, status, detail, upload, code

    def error(self) -> BackendError:
        d, status = self.detail, self.status
        if status == 401:
            return BackendError(
                f"the backend at {self.url} refused the token: enter the token it was started with in the add-on's "
                f"preferences ({d})", status
            )
        if self.upload and status in (400, 413, 415, 422):
            return BackendError(d if d.startswith("upload refused") else f"upload refused: {d}", status)
        if self.code == api.BUSY or status == 503:
            return BackendBusy(f"the backend is busy: {d}", status)
        if status >= 500:
            return BackendError(f"the backend failed ({status}): {d}", status)
        return BackendError(d, status)


#: One opener for every request, with no proxies: the backend is on this machine or the studio LAN,
#: and a system/environment proxy would otherwise see (or refuse) requests to it.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _error_reply(e: urllib.error.HTTPError) -> tuple[str, str | None]:
    """The server's error (:class:`shared.api.ErrorReply`): ``(detail, code)``, or the HTTP reason."""
    try:
        reply = api.ErrorReply.from_json(json.loads(e.read()))
        if reply.detail:
            return reply.detail, reply.code
    except Exception:  # noqa: BLE001 - any unreadable body falls back to the reason
        pass
    return f"HTTP {e.code} {e.reason}", None


def discover(timeout: float = 2.0, interfaces: list[str] | None = None) -> list[Discovered]:
    """Browse zeroconf for backends for ``timeout`` seconds.

    Returns ``[Discovered(name, url, txt)]`` sorted by name, where ``txt`` has ``api``, ``model``, ``device``,
    ``token`` ("1" when a token is required). ``interfaces`` limits browsing (e.g.
    ``["127.0.0.1"]``); by default all IPv4 interfaces, loopback included.
    """
    try:
        from zeroconf import IPVersion, ServiceBrowser, ServiceListener, Zeroconf
    except ImportError:
        raise BackendError("zeroconf is not available in this Blender; enter the backend URL by hand") from None

    names: set[str] = set()

    class _Listener(ServiceListener):
        def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            names.add(name)

        def update_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            names.add(name)

        def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            names.discard(name)

    try:
        zc = Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only) if interfaces else Zeroconf(
            ip_version=IPVersion.V4Only
        )
    except OSError as e:
        raise BackendError(f"cannot browse the network for backends ({e}); enter the backend URL by hand") from None
    found: list[Discovered] = []
    try:
        browser = ServiceBrowser(zc, api.SERVICE_TYPE, _Listener())
        time.sleep(timeout)
        browser.cancel()
        for name in sorted(names):
            info = zc.get_service_info(api.SERVICE_TYPE, name, timeout=1000)
            if info is None or not info.port:
                continue
            addresses = info.parsed_addresses(IPVersion.V4Only)
            if not addresses:
                continue
            # A LAN backend may list several addresses; prefer a routable one over loopback.
            host = next((a for a in addresses if not a.startswith("127.")), addresses[0])
            txt = {
                (k.decode() if isinstance(k, bytes) else str(k)): (v.decode() if isinstance(v, bytes) else "")
                for k, v in info.properties.items()
            }
            instance = name[: -len(api.SERVICE_TYPE) - 1] if name.endswith("." + api.SERVICE_TYPE) else name
            found.append(Discovered(instance, f"http://{host}:{info.port}", txt))
    finally:
        zc.close()
    return found
