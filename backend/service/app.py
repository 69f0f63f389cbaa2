"""The HTTP API (FastAPI), versioned under :data:`shared.api.API_PREFIX`.

The app only validates, queues and translates; the work is done by an *engine* object passed to
:func:`create_app` (normally :class:`backend.service.engine.Engine`), so the HTTP layer can be
served and tested with any engine that has the same methods (see :class:`EngineLike`). Requests and
answers are the typed contract of :mod:`shared.api` (each answer serialised once, by ``to_json``).

Endpoints (all under ``/v1``; all need the token when one is configured)::

    GET  /info                          api version, model id, preset, device, generic?, token required
    POST /embed                         body: a bundle .zip (raw or multipart) -> 202 {"job": id, ...}
    POST /train                         JSON {"what": "tags" | "decoder"} -> 202 {"job": id, ...}
    POST /index                         JSON {"folder": path on the backend's machine} -> 202 (background)
    GET  /models                        {"active", "previous", "models": [...]} (library homes)
    POST /models/restore                JSON {} (the previous model) or {"model_id": id} -> the new info
    GET  /jobs/{id}                     status queued|running|done|failed|cancelled, progress, message
    POST /jobs/{id}/cancel
    GET  /jobs/{id}/result              the job's result (409 until it is done); an embed answered by the
                                        instant encoder has code_source "encoder" and "refine_job": the id
                                        of the job whose result is the refined answer (code_source "inversion")
    GET  /assets/{name}/neighbours      ?space=shape|texture|both&k=10
    GET  /assets/{name}/thumbnail       PNG
    DELETE /assets/{name}               forget the asset: out of the catalogue (and a home's stored views), 404 for
                                        an unknown name; the artist's .blend is untouched -> {"name", "assets", "message"}
    GET  /review                        ?limit=10: tag predictions least sure first {"items": [...], "message"}
    POST /review                        JSON {"name", "tag", "accept": bool[, "limit"]} -> stored, tag classifiers
                                        retrained: {"probability" (new), "queue": next items, ...}

Without a token (loopback only) a request whose Host header is not 127.0.0.1, localhost or [::1]
is refused with 400 (DNS-rebinding guard). Every endpoint then applies the request policy of
:mod:`backend.service.policy`: a foreign ``Origin`` is refused (403); every POST or DELETE needs the header
:data:`shared.api.CLIENT_HEADER` (403 without it; a web page cannot send it cross-site); JSON bodies need
``Content-Type: application/json`` and ``POST /embed`` ``application/zip``, ``application/octet-stream`` or
``multipart/form-data`` (415 otherwise). At most ``max_uploads`` uploads are read at once (503 with
``Retry-After`` beyond). ``POST /index`` only reads folders under the server's library roots (403 otherwise).

Building a model (``/index``, ``/train`` with ``decoder``) runs in a second, one-slot background
queue beside the embed queue: the current model keeps serving and the backend switches to the new
one atomically when it is ready (``GET /info`` shows the running build under ``background``).

Every error is JSON ``{"detail": "..."}`` with a 4xx status naming what is wrong; an unexpected
exception becomes a logged 500 with a message and the server keeps serving. No error body names a
server folder (:func:`backend.service.policy.redact`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from backend.library.errors import CatalogueBusy, LibraryError
from backend.model.errors import ModelError
from shared import api
from shared.api import MAX_K, SPACES
from shared.bundle import Bundle, BundleError

from . import auth
from .embedding import Followups
from .errors import Busy, ServiceError
from .jobs import DONE, FINAL_STATES, JobError, JobQueue
from .policy import LibraryRoots, RequestPolicy, redact
from .uploads import parse_upload

log = logging.getLogger(__name__)
#: Largest JSON body accepted by endpoints that take options (not uploads).
MAX_JSON_BYTES = 64 * 1024
#: Uploads read and validated at the same time (each buffers up to max_upload_bytes): beyond, 503 + Retry-After.
MAX_CONCURRENT_UPLOADS = 4
#: Deepest JSON nesting accepted in an options body (they are flat objects).
MAX_JSON_DEPTH = 16


class EngineLike(Protocol):
    """What the app needs from an engine. Methods run in worker threads and may raise ServiceError."""

    def info(self) -> api.ModelInfo: ...

    def embed(
        self, bundle: Bundle, progress: Callable[[float, str], None], cancel: threading.Event,
        followups: Followups | None = None,
    ) -> api.EmbedResult: ...

    def train(
        self, request: api.TrainRequest, progress: Callable[[float, str], None], cancel: threading.Event
    ) -> api.TrainResult | api.BuildResult: ...

    def neighbours(self, name: str, space: str, k: int) -> api.NeighbourList: ...

    def thumbnail(self, name: str) -> bytes: ...

    def forget(self, name: str) -> api.Forgotten: ...

    def models(self) -> api.ModelsList: ...

    def restore(self, model_id: str | None = None) -> api.ModelInfo: ...

    def build(
        self, request: api.IndexRequest, progress: Callable[[float, str], None], cancel: threading.Event
    ) -> api.BuildResult: ...

    def review_queue(self, limit: int = 10) -> api.ReviewQueue: ...

    def review_answer(self, name: str, tag: str, accept: bool, limit: int = 10) -> api.ReviewResult: ...

    @property
    def trainable(self) -> tuple[str, ...]:
        """What this engine can retrain while serving ("tags"; with a library home also "decoder")."""
        ...


def create_app(
    engine: EngineLike,
    token: str | None = None,
    queue: JobQueue | None = None,
    max_upload_bytes: int = api.MAX_UPLOAD_BYTES,
    on_startup: Callable[[], None] | None = None,
    on_shutdown: Callable[[], None] | None = None,
    host: str | None = None,
    library_roots: LibraryRoots | None = None,
    max_uploads: int = MAX_CONCURRENT_UPLOADS,
) -> FastAPI:
    """Build the FastAPI app around ``engine``.

    ``token``: when set, every request must carry it in :data:`shared.api.TOKEN_HEADER`.
    ``queue``: the job queue (a new one by default); ``app.state.queue`` holds it.
    ``on_startup`` / ``on_shutdown`` run in the server's lifespan (e.g. zeroconf registration);
    the queue is shut down after ``on_shutdown``.
    ``host``: the host the server was started on (its origin is one of the server's own, see
    :class:`~backend.service.policy.RequestPolicy`); ``library_roots``: the folders ``POST /index`` may read
    (default: none); ``max_uploads``: uploads buffered at once.
    """
    jobs = queue or JobQueue()
    # Model building runs beside the embed queue (hours on a CPU; the old model keeps serving meanwhile).
    background = JobQueue(max_queued=1, keep_finished=16)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if on_startup is not None:
            on_startup()
        try:
            yield
        finally:
            # Blocking clean-up (zeroconf goodbye packets, joining the worker) off the event loop.
            if on_shutdown is not None:
                await asyncio.to_thread(on_shutdown)
            await asyncio.to_thread(jobs.shutdown)
            await asyncio.to_thread(background.shutdown)

    app = FastAPI(
        title="Asset2Vec backend", version=str(api.API_VERSION), docs_url=None, redoc_url=None, lifespan=lifespan
    )
    app.state.queue, app.state.engine, app.state.token = jobs, engine, token
    app.state.background = background
    roots = library_roots or LibraryRoots()
    app.state.library_roots = roots
    uploads = asyncio.Semaphore(max_uploads)

    def followups(kind: str, fn: Any) -> str:
        # Refinements of instant-encoder codes: jobs of this queue (visible, cancellable, one decoder user at a
        # time), behind every waiting upload so the next Embed still answers at once.
        return jobs.submit(kind, fn, low_priority=True).id

    def queue_of(job_id: str) -> JobQueue:
        try:
            background.get(job_id)
            return background
        except JobError:
            return jobs

    def submit_background(kind: str, fn: Any) -> dict[str, Any]:
        running = background.latest()
        if running and running.status not in FINAL_STATES:
            raise Busy(f"a model is already being built (job {running.id}: {running.message}); "
                       "wait for it or cancel it first")
        job = background.submit(kind, fn)
        return _accepted(job.id, "building a new model in the background; the current one keeps serving")

    def scrub(status: api.JobStatus) -> api.JobStatus:
        # A job's failure message may quote an exception that names a server folder: redacted like error bodies.
        for key in ("message", "error"):
            if getattr(status, key):
                setattr(status, key, redact(getattr(status, key), _server_paths(engine)))
        return status

    def require_token(request: Request) -> None:
        if not auth.token_ok(token, request.headers.get(api.TOKEN_HEADER)):
            given = api.TOKEN_HEADER in request.headers
            why = "the token is wrong" if given else f"no token was sent (header {api.TOKEN_HEADER})"
            raise ServiceError(f"token refused: {why}; use the token the backend was started with", 401)

    def require_local_host(request: Request) -> None:
        # Without a token the service only listens on loopback; a web page could still reach it through
        # DNS rebinding (its own name resolving to 127.0.0.1), which the Host header gives away.
        if token is None and not _loopback_host(request.headers.get("host", "")):
            raise ServiceError(
                f"request refused: Host {request.headers.get('host', '')!r} is not this machine (127.0.0.1, "
                f"localhost or [::1]); a backend without a token only answers requests addressed to loopback",
                400,
            )

    router = APIRouter(prefix=api.API_PREFIX, dependencies=[
        Depends(require_local_host), Depends(require_token), Depends(RequestPolicy(host))])

    @router.get("/info")
    def info() -> dict[str, Any]:
        served = engine.info()
        return api.ServerInfo(
            **{f.name: getattr(served, f.name) for f in dataclasses.fields(served)},
            api_version=api.API_VERSION,
            token_required=token is not None,
            max_upload_bytes=max_upload_bytes,
            queue=jobs.stats(),
            background=scrub(latest) if (latest := background.latest()) else None,
        ).to_json()

    @router.post("/embed", status_code=202)
    async def embed(request: Request) -> dict[str, Any]:
        # The Content-Type was checked by the request policy. Uploads buffered at once are bounded, not queued:
        # a client told to retry holds no memory here.
        if uploads.locked():
            raise Busy(f"{max_uploads} uploads are being received already; retry in a moment", 503)
        async with uploads:
            data = await _read_upload(request, max_upload_bytes)
            try:
                # Validation decodes every view of an up-to-32-MiB archive: off the event loop.
                bundle = await asyncio.to_thread(parse_upload, data)
            except BundleError as e:
                raise ServiceError(f"upload refused: {e}", 400) from None
            del data  # from here on only the validated bundle (its images in memory) travels
        job = jobs.submit("embed", lambda progress, cancel: engine.embed(bundle, progress, cancel, followups))
        return _accepted(job.id, f"embedding {bundle.asset.name!r}")

    @router.post("/train", status_code=202)
    async def train(request: Request) -> dict[str, Any]:
        options = await _read_json(request)
        trainable = tuple(getattr(engine, "trainable", ("tags",)))
        what = options.setdefault("what", trainable[0] if trainable else "tags")
        if what not in trainable:
            raise ServiceError(
                f"cannot train {what!r} on a running backend (it can train: {', '.join(trainable) or 'nothing'}); "
                f"train the decoder with `asset2vec train BUNDLES --out RUN_DIR` and serve the new run",
                400,
            )
        train_request = _parse(api.TrainRequest, options)
        if what == "decoder":
            return submit_background(
                "train", lambda progress, cancel: engine.train(train_request, progress, cancel))
        job = jobs.submit("train", lambda progress, cancel: engine.train(train_request, progress, cancel))
        return _accepted(job.id, "training")

    @router.post("/index", status_code=202)
    async def index(request: Request) -> dict[str, Any]:
        options = await _read_json(request)
        if "decoder" not in engine.trainable:
            raise ServiceError("this backend serves a single run (started with --run); start it with a library "
                               "home (asset2vec serve --home DIR) to build models from a library", 400)
        index_request = _parse(api.IndexRequest, options,
                               folder='give the library folder: {"folder": "/path/to/library"}')
        folder = index_request.folder
        resolved = roots.check(folder)  # 403 outside the roots, before anything looks at the disk
        if not await asyncio.to_thread(resolved.is_dir):
            raise ServiceError(f"{folder[:200]}: no such folder under the library roots (the backend reads the "
                               "library from its own disk)", 422)
        index_request = dataclasses.replace(index_request, folder=str(resolved))
        return submit_background("index", lambda progress, cancel: engine.build(index_request, progress, cancel))

    @router.get("/models")
    def models() -> dict[str, Any]:
        return engine.models().to_json()

    @router.post("/models/restore")
    async def restore(request: Request) -> dict[str, Any]:
        restore_request = _parse(api.RestoreRequest, await _read_json(request),
                                 model_id="model_id must be a model id (a string) or null")
        try:
            return (await asyncio.to_thread(engine.restore, restore_request.model_id)).to_json()
        except CatalogueBusy:
            raise  # 503 + Retry-After (its own handler), not a refusal of the switch
        except (LibraryError, ModelError) as e:
            raise ServiceError(f"cannot switch models: {e}", 409) from None

    def public(status: api.JobStatus) -> dict[str, Any]:
        return scrub(status).to_json()

    @router.get("/jobs/{job_id}")
    def job_status(job_id: str) -> dict[str, Any]:
        return public(queue_of(job_id).snapshot(job_id))

    @router.post("/jobs/{job_id}/cancel")
    def job_cancel(job_id: str) -> dict[str, Any]:
        return public(queue_of(job_id).cancel(job_id))

    @router.get("/jobs/{job_id}/result")
    def job_result(job_id: str) -> dict[str, Any]:
        job = queue_of(job_id).get(job_id)
        if job.status != DONE:
            why = f": {redact(job.error, _server_paths(engine))}" if job.error else ""
            raise ServiceError(f"job {job_id} has no result: it is {job.status}{why}", 409)
        return job.result or {}  # stored as the contract's JSON when the job finished

    @router.get("/assets/{name:path}/neighbours")
    def neighbours(name: str, space: str = "both", k: str = "10") -> dict[str, Any]:
        if space not in SPACES:
            raise ServiceError(f"space must be one of {', '.join(SPACES)}, got {space!r}", 400)
        try:
            k_int = int(k)
        except ValueError:
            raise ServiceError(f"k must be a whole number between 1 and {MAX_K}, got {k!r}", 400) from None
        if not 1 <= k_int <= MAX_K:
            raise ServiceError(f"k must be between 1 and {MAX_K}, got {k_int}", 400)
        return engine.neighbours(name, space, k_int).to_json()

    @router.get("/review")
    def review_queue(limit: str = "10") -> dict[str, Any]:
        return engine.review_queue(_review_limit(limit)).to_json()

    @router.post("/review")
    async def review_answer(request: Request) -> dict[str, Any]:
        answer = _parse(
            api.ReviewRequest, await _read_json(request),
            name='give the asset: {"name": "<catalogue name>", "tag": "...", "accept": true}',
            tag='give the tag: {"name": "...", "tag": "<tag>", "accept": true}',
            accept='"accept" must be true or false',
            limit=f"limit must be between 1 and {MAX_K}",
        )
        # Retraining the tag classifiers takes a moment: off the event loop.
        result = await asyncio.to_thread(engine.review_answer, answer.name, answer.tag.strip(), answer.accept,
                                         answer.limit)
        return result.to_json()

    @router.get("/assets/{name:path}/thumbnail")
    def thumbnail(name: str) -> Response:
        return Response(engine.thumbnail(name), media_type="image/png")

    @router.delete("/assets/{name:path}")
    async def forget(name: str) -> dict[str, Any]:
        # A mutating request: the request policy demanded the client header. Removing views touches the disk: off
        # the event loop.
        return (await asyncio.to_thread(engine.forget, name)).to_json()

    app.include_router(router)
    _install_error_handlers(app, lambda: _server_paths(engine))
    return app


def _server_paths(engine: Any) -> list[Any]:
    """The engine's folders (home, run), kept out of error bodies."""
    paths = []
    for attr in ("home", "run"):
        value = getattr(engine, attr, None)
        value = getattr(value, "root", None) or getattr(value, "run_dir", None) or value
        if isinstance(value, str | Path):
            paths.append(value)
    return paths


def _accepted(job_id: str, message: str) -> dict[str, Any]:
    base = f"{api.API_PREFIX}/jobs/{job_id}"
    return api.JobAccepted(job=job_id, status=api.QUEUED, message=message, status_url=base,
                           result_url=f"{base}/result").to_json()


def _parse(cls: type[api.W], data: dict[str, Any], **hints: str) -> api.W:
    """A request of the contract; one that breaks it is a 422 naming the field. ``hints``: field -> what to
    say when that field is wrong (the contract's own message follows in brackets)."""
    try:
        return cls.from_json(data)
    except api.ApiError as e:
        # The contract's messages start with "<Class>.<field>" (see shared.api.Wire.from_json).
        field = re.match(rf"{cls.__name__}\.(\w+)", str(e))
        hint = hints.get(field.group(1)) if field else None
        raise ServiceError(f"{hint} ({e})" if hint else f"invalid request: {e}", 422) from None


def _review_limit(raw: Any) -> int:
    """The ``limit`` of a review request: a whole number in 1..MAX_K (422 otherwise)."""
    try:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError
        limit = int(raw)
    except (TypeError, ValueError, OverflowError):
        raise ServiceError(f"limit must be a whole number between 1 and {MAX_K}, got {str(raw)[:40]!r}",
                           422) from None
    if not 1 <= limit <= MAX_K:
        raise ServiceError(f"limit must be between 1 and {MAX_K}, got {limit}", 422)
    return limit


#: Host names that address this machine's loopback interface.
_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def _loopback_host(host: str) -> bool:
    """Whether a Host header (``name``, ``name:port``, ``[::1]`` or ``[::1]:port``) names loopback."""
    host = host.strip().lower()
    if host.startswith("["):
        name, sep, rest = host[1:].partition("]")
        if not sep or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return False
    else:
        name, _, port = host.partition(":")
        if port and not port.isdigit():
            return False
    return name in _LOOPBACK_NAMES


async def _read_upload(request: Request, limit: int) -> bytes:
    """The uploaded bundle's bytes, from a raw body or the first file of a multipart form.

    The size limit is enforced while reading (never buffering more than ``limit`` bytes), and
    up front from Content-Length when the client sends one.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise ServiceError(_too_big(int(declared), limit), 413)
    ctype = request.headers.get("content-type", "")
    # Multipart adds headers and boundaries around the file; allow a little slack for them.
    body_limit = limit + 64 * 1024 if ctype.startswith("multipart/") else limit
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > body_limit:
            raise ServiceError(_too_big(size, limit, partial=True), 413)
        chunks.append(chunk)
    body = b"".join(chunks)
    if ctype.startswith("multipart/"):
        body = await _multipart_file(request, body)
        if len(body) > limit:
            raise ServiceError(_too_big(len(body), limit), 413)
    if not body:
        raise ServiceError("upload refused: the request body is empty; send the bundle .zip as the body", 400)
    return body


async def _multipart_file(request: Request, body: bytes) -> bytes:
    async def stream() -> AsyncIterator[bytes]:
        yield body

    try:
        form = await MultiPartParser(request.headers, stream(), max_files=1, max_fields=8).parse()
    except MultiPartException as e:
        raise ServiceError(f"upload refused: malformed multipart form ({e.message})", 400) from None
    files = [v for v in form.values() if not isinstance(v, str)]
    if not files:
        raise ServiceError("upload refused: the multipart form has no file; attach the bundle .zip", 400)
    data = await files[0].read()
    await form.close()
    return data


def _too_big(size: int, limit: int, partial: bool = False) -> str:
    got = f"more than {size}" if partial else str(size)
    return (
        f"upload refused: {got} bytes is over the {limit // (1024 * 1024)} MiB limit; "
        f"capture the views at a smaller image size"
    )


async def _read_json(request: Request) -> dict[str, Any]:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_JSON_BYTES:
            raise ServiceError(f"request body is over {MAX_JSON_BYTES} bytes; options are a small JSON object", 413)
    if not raw.strip():
        return {}
    depth = _nesting(raw)
    if depth > MAX_JSON_DEPTH:
        raise ServiceError(f"request body nests {depth} levels deep; options are a flat JSON object", 400)
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ServiceError(f"request body is not valid JSON ({e})", 400) from None
    except (ValueError, RecursionError) as e:  # e.g. an integer of more than 4300 digits
        raise ServiceError(f"request body is not acceptable JSON ({str(e)[:120]})", 400) from None
    if not isinstance(data, dict):
        raise ServiceError("request body must be a JSON object of options", 400)
    return data


def _nesting(raw: bytes) -> int:
    """Deepest ``[``/``{`` nesting of a JSON text (outside strings), counted without parsing it (no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _install_error_handlers(app: FastAPI, server_paths: Callable[[], list[Any]]) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        reply = exc.reply()
        reply.detail = redact(reply.detail, server_paths())
        return JSONResponse(reply.to_json(), status_code=exc.status, headers=exc.headers())

    @app.exception_handler(CatalogueBusy)
    async def catalogue_busy(request: Request, exc: CatalogueBusy) -> JSONResponse:
        # Another process holds the catalogue's write lock: nothing was written, the request can simply be retried.
        reply = api.ErrorReply(detail=redact(f"the backend is busy: {exc}", server_paths()), code=api.BUSY)
        return JSONResponse(reply.to_json(), status_code=503, headers={"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()]
        return JSONResponse({"detail": "invalid request: " + "; ".join(parts)}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = (
                f"no such endpoint: {request.method} {request.url.path} "
                f"(this backend speaks API {api.API_PREFIX}; update the add-on or the backend so they match)"
            )
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return JSONResponse({"detail": detail}, status_code=exc.status_code)

    # Last line of defence: a bug in a request becomes a logged 500 with a message, and the server keeps serving.
    app.add_middleware(_CatchAll)


class _CatchAll:
    """Pure ASGI middleware (no per-request task, unlike ``BaseHTTPMiddleware``) turning crashes into a JSON 500."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as e:  # noqa: BLE001
            log.exception("unexpected error serving %s %s", scope.get("method"), scope.get("path"))
            if started:  # half a response is already out: nothing sensible left to send
                raise
            response = JSONResponse(
                {"detail": f"internal error in the backend ({type(e).__name__}); see the backend's log"},
                status_code=500,
            )
            await response(scope, receive, send)

