"""The HTTP API's wire contract, shared by the backend service and the add-on's client.

Every request and answer that crosses HTTP is one of the data classes below. Each has
``from_json(d)`` (validating: a missing or mistyped field raises :class:`ApiError` naming it) and
``to_json()`` (a JSON-able dict with the field names the server emits). The backend builds these
objects and serialises them once; the client parses them once; nobody reads raw dicts in between.
Unknown keys are ignored (a newer backend may add fields); optional fields have defaults.

Glossary (one name per concept, everywhere):

- ``name``: an asset's *catalogue name*, unique in a library (``shared.naming.catalogue_name``).
- ``asset_name``: the asset's *Blender ID name* inside its .blend (object or collection name).
- ``source_file``: the path of the .blend the asset lives in.
- ``model_id``: one trained model (its decoder, codes and tag classifiers); never "run"/"field".
- ``code``: an asset's latent code, ``shape`` + ``texture`` halves; ``code_source`` says how it was
  made: ``"encoder"`` (instant encoder, refined later), ``"inversion"`` (fitted by the decoder) or
  ``"training"`` (learnt with the model).
- The bundle format (``shared.bundle.AssetInfo``) and the catalogue call the .blend path ``source_blend``;
  on the wire it is ``source_file``.
- ``predicted_tags``: ``{tag: probability}`` from the tag classifiers; ``proposed_tags``: the ones to write
  (each at or over its own write threshold, ``write_thresholds``; at most one per exclusive group) that the asset
  does not have yet (computed once, on the backend); ``suggested_tags``: likely ones that are not written.
- ``space``: one of :data:`SPACES`; neighbours are searched in one space.

bpy-free, torch-free and numpy-free (the add-on vendors this package).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from .wire import ApiError, Wire, nonempty, one_of

# ApiError and Wire live in shared.wire; callers import them from here with the contract's classes.

API_VERSION = 1
API_PREFIX = f"/v{API_VERSION}"
#: zeroconf service type the backend advertises and the add-on browses.
SERVICE_TYPE = "_asset2vec._tcp.local."
DEFAULT_PORT = 8765
#: Largest accepted bundle upload (18 PNGs at up to 512 px fit comfortably).
MAX_UPLOAD_BYTES = 32 * 1024 * 1024
#: Header carrying the token when the backend serves beyond loopback.
TOKEN_HEADER = "X-Asset2Vec-Token"
#: Header every mutating request (POST/PUT/PATCH/DELETE) must carry, with the value :data:`CLIENT_HEADER_VALUE`.
#: A web page cannot send a custom header cross-site without a CORS preflight, which the backend never grants,
#: so a page in the artist's browser cannot drive the backend; :class:`shared.client.Client` always sends it.
CLIENT_HEADER = "X-Asset2Vec-Client"
CLIENT_HEADER_VALUE = "1"
#: Content type of every JSON request body (any other is refused with 415).
JSON_TYPE = "application/json"
#: Bounds of the build options (beyond them a request is refused before any work starts).
OPTION_LIMITS: dict[str, float] = {"steps": 10_000_000, "minutes": 7 * 24 * 60, "size": 4096, "samples": 65_536}
#: Longest folder path a request may name.
MAX_PATH_CHARS = 4096

#: The code spaces neighbours are searched in.
SPACES = ("shape", "texture", "both")
#: The rig view used as an asset's thumbnail: middle ring (35 degrees down), a three-quarter view.
THUMBNAIL_VIEW = 7
#: How a code was made: the instant encoder (refined later), inversion by the decoder, or the model's training.
CODE_SOURCES = ("encoder", "inversion", "training")
#: Largest ``k`` / ``limit`` a query may ask for.
MAX_K = 100

#: Job states (``JobStatus.status``).
QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
JOB_STATES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
FINAL_STATES = frozenset({DONE, FAILED, CANCELLED})


def thumbnail_url(name: str) -> str:
    """The API path of an asset's thumbnail (relative to the server's base URL)."""
    from urllib.parse import quote

    return f"{API_PREFIX}/assets/{quote(name, safe='')}/thumbnail"


# -- errors ---------------------------------------------------------------------------------------

#: :attr:`ErrorReply.code` of a backend that cannot take the request now (queue full, a model being built or
#: switched): the client raises ``BackendBusy`` and callers may retry later.
BUSY = "busy"


@dataclass
class ErrorReply(Wire):
    """Every error answer (4xx/5xx): a message for the user, and a machine-readable ``code`` where one fits."""

    omit_none: ClassVar[frozenset[str]] = frozenset({"code"})

    detail: str
    code: str | None = None


# -- jobs -------------------------------------------------------------------------------------------


@dataclass
class JobAccepted(Wire):
    """202 answer of ``POST /embed``, ``/train``, ``/index``: the job that will do the work."""

    job: str
    status: str = QUEUED
    message: str = ""
    status_url: str = ""
    result_url: str = ""


@dataclass
class JobStatus(Wire):
    """``GET /jobs/{id}``: where a job stands (its result has its own endpoint)."""

    omit_none: ClassVar[frozenset[str]] = frozenset({"queue_position"})

    id: str
    status: str
    kind: str = ""
    progress: float = 0.0
    message: str = ""
    error: str | None = None
    created: float | None = None
    started: float | None = None
    finished: float | None = None
    queue_position: int | None = None  # while queued: 0 = next

    def check(self, where: str) -> None:
        one_of(self.status, JOB_STATES, f"{where}.status")

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATES


@dataclass
class QueueStats(Wire):
    """How many jobs wait and run in the embed queue."""

    queued: int = 0
    running: int = 0


# -- models -----------------------------------------------------------------------------------------


@dataclass
class ModelSummary(Wire):
    """The served model's record: when it was made and its training facts (``trained_on``, ``folder``...)."""

    model_id: str
    created: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelInfo(Wire):
    """What the backend serves (``POST /models/restore`` answers this; ``GET /info`` extends it)."""

    model_id: str
    preset: str = ""
    device: str = ""
    generic: bool = False  # the built-in starter model, not trained on this library
    heldout_psnr: float | None = None
    assets: int = 0  # catalogued assets with a code of this model
    tags: list[str] = field(default_factory=list)  # tags the classifiers predict
    tags_help: str | None = None  # how tags start, while there is none to predict
    trainable: list[str] = field(default_factory=list)  # what POST /train may ask for
    model: ModelSummary | None = None
    previous_model: str | None = None
    retrain_advice: str | None = None
    instant_embed: bool = False  # Embed answers from the instant encoder, then refines


@dataclass
class ServerInfo(ModelInfo):
    """``GET /info``: the served model plus the server's own facts."""

    api_version: int = API_VERSION
    token_required: bool = False
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    queue: QueueStats = field(default_factory=QueueStats)
    background: JobStatus | None = None  # the latest model build (running or finished)


@dataclass
class ModelEntry(Wire):
    """One model of a library home (``GET /models``)."""

    model_id: str
    preset: str = ""
    created: str | None = None
    active: bool = False
    codes: int = 0
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelsList(Wire):
    """``GET /models``: the home's models, which is active and which was active before."""

    active: str | None = None
    previous: str | None = None
    models: list[ModelEntry] = field(default_factory=list)


@dataclass
class RestoreRequest(Wire):
    """``POST /models/restore``: switch to ``model_id`` (None: the previously active model)."""

    omit_none: ClassVar[frozenset[str]] = frozenset({"model_id"})

    model_id: str | None = None


@dataclass
class TrainRequest(Wire):
    """``POST /train``: what to retrain while serving (``"tags"``; with a home also ``"decoder"``)."""

    omit_none: ClassVar[frozenset[str]] = frozenset({"steps", "minutes", "size", "samples"})

    what: str = "tags"
    steps: int | None = None  # the build options of a "decoder" (see IndexRequest)
    minutes: float | None = None
    size: int | None = None
    samples: int | None = None

    def check(self, where: str) -> None:
        nonempty(self.what, f"{where}.what")
        _positive(self, where)


@dataclass
class IndexRequest(Wire):
    """``POST /index``: build a model from ``folder`` (a path on the backend's machine)."""

    omit_none: ClassVar[frozenset[str]] = frozenset({"steps", "minutes", "size", "samples"})

    folder: str
    steps: int | None = None  # training steps of the new model (None: the preset's)
    minutes: float | None = None  # or a training time budget
    size: int | None = None  # capture: view size in pixels
    samples: int | None = None  # capture: Cycles samples per view

    def check(self, where: str) -> None:
        nonempty(self.folder, f"{where}.folder")
        if len(self.folder) > MAX_PATH_CHARS or "\x00" in self.folder:
            raise ApiError(f"{where}.folder: not a folder path (over {MAX_PATH_CHARS} characters or a NUL byte)")
        _positive(self, where)


def _positive(request: IndexRequest | TrainRequest, where: str) -> None:
    """The build options (training steps and minutes, capture size and samples) are positive and bounded when
    given (``1e999`` parses as infinity: refused here, before any work starts)."""
    for key, most in OPTION_LIMITS.items():
        value = getattr(request, key)
        if value is not None and not 0 < value <= most:
            raise ApiError(f"{where}.{key}: must be a positive number up to {most:g}, got {value!r}"[:200])


@dataclass
class TrainResult(Wire):
    """Result of a ``"tags"`` training job."""

    what: str
    model_id: str
    trained: list[str] = field(default_factory=list)
    assets: int = 0
    report: dict[str, Any] = field(default_factory=dict)  # per tag: status, examples, scores


@dataclass
class BuildResult(Wire):
    """Result of a model build (``POST /index`` or ``/train`` ``"decoder"``): the index run's summary.

    Mirrors every field of ``backend.lifecycle.index.IndexSummary`` (a test ties the two field lists)."""

    model_id: str
    serving: str  # the model the backend serves after the build (the new one)
    home: str = ""  # empty in the service's answers (no server path leaves the backend)
    folder: str | None = None
    previous_model: str | None = None
    trained: bool = False
    activated: bool = False
    assets: int = 0
    captured: int = 0
    capture_up_to_date: int = 0
    failures: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)  # assets whose .blend is gone or no longer has them
    moved: dict[str, str] = field(default_factory=dict)  # old name -> new name (same content, moved or renamed)
    inverted: int = 0
    from_encoder: int = 0
    heldout_psnr: float | None = None
    encoder: dict[str, Any] | None = None
    training_plan: dict[str, Any] | None = None
    tags: list[str] = field(default_factory=list)
    tags_help: str | None = None
    retrain_advice: str | None = None
    explore: str | None = None
    catalogue: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)


# -- assets -----------------------------------------------------------------------------------------


@dataclass
class Neighbour(Wire):
    """A similar catalogued asset, with what the add-on needs to link it."""

    name: str
    distance: float
    rank: int = 0
    source_file: str = ""
    asset_name: str = ""
    family: str = ""
    category: str = ""
    thumbnail_url: str | None = None
    tags: list[str] = field(default_factory=list)  # the neighbour's artist tags (review acceptances included)
    #: How many near-identical assets (one object saved in several files) this suggestion stands for, itself included.
    copies: int = 1


@dataclass
class NeighbourList(Wire):
    """``GET /assets/{name}/neighbours``: the nearest assets in one space."""

    name: str
    space: str
    model_id: str
    neighbours: list[Neighbour] = field(default_factory=list)
    thumbnail_url: str | None = None

    def check(self, where: str) -> None:
        one_of(self.space, SPACES, f"{where}.space")


@dataclass
class Forgotten(Wire):
    """``DELETE /assets/{name}``: the asset is out of the catalogue (its codes, tags, review answers, neighbour
    entries and, in a library home, its stored views); the artist's .blend is untouched."""

    name: str
    assets: int = 0  # assets left in the catalogue
    message: str = ""


@dataclass
class EmbedResult(Wire):
    """An embedded asset: its code, tags (predicted and proposed) and neighbours in every space.

    The result of an embed job, and of its refinement job (``refined_from: "encoder"``). When the
    code came from the instant encoder, ``refine_job`` is the job whose result is the refined answer
    (or ``refine_error`` says why none was queued).
    """

    omit_none: ClassVar[frozenset[str]] = frozenset(
        {"refine_job", "refine_error", "instant_seconds", "refined_from", "thumbnail_url"})

    name: str
    model_id: str
    shape: list[float]
    texture: list[float]
    code_source: str = "inversion"
    source_file: str = ""
    asset_name: str = ""
    content_hash: str = ""
    psnr: float | None = None
    seconds: float = 0.0
    predicted_tags: dict[str, float] = field(default_factory=dict)
    proposed_tags: dict[str, float] = field(default_factory=dict)
    #: The suggestion threshold (a backend before per-tag thresholds wrote every tag at or over it).
    threshold: float = 0.5
    #: Per predicted tag, the probability it is written at (its calibrated write threshold); null: a suggestion only.
    #: Empty from a backend before per-tag thresholds: then ``threshold`` is every tag's (:meth:`threshold_of`).
    write_thresholds: dict[str, float | None] = field(default_factory=dict)
    #: Likely tags not written (below their write threshold, beaten in an exclusive group...): the artist's call.
    suggested_tags: dict[str, float] = field(default_factory=dict)
    #: Why each predicted tag the asset lacks is written, suggested or left out ("written: 0.93 >= its threshold 0.88").
    tag_reasons: dict[str, str] = field(default_factory=dict)
    #: The asset's tags the catalogue holds as the artist's (review acceptances included): never removed by a later
    #: answer, even where the file recorded them as added by Asset2Vec.
    artist_tags: list[str] = field(default_factory=list)
    neighbours: dict[str, list[Neighbour]] = field(default_factory=dict)
    retrain_advice: str | None = None
    thumbnail_url: str | None = None
    refine_job: str | None = None
    refine_error: str | None = None
    instant_seconds: float | None = None
    refined_from: str | None = None

    def check(self, where: str) -> None:
        one_of(self.code_source, CODE_SOURCES, f"{where}.code_source")
        for space in self.neighbours:
            one_of(space, SPACES, f"{where}.neighbours")

    def all_neighbours(self) -> list[Neighbour]:
        """Every neighbour of every space (a name may repeat across spaces)."""
        return [n for space in SPACES for n in self.neighbours.get(space, [])]

    def threshold_of(self, tag: str) -> float | None:
        """The probability ``tag`` is written at: its own write threshold (None: suggested only), or, from a backend
        that sends none (an older one), the single ``threshold``."""
        if tag in self.write_thresholds:
            return self.write_thresholds[tag]
        return None if self.write_thresholds else self.threshold


@dataclass
class RefineDropped(Wire):
    """Result of a refinement job with nothing left to refine (another model serves, new content...)."""

    name: str
    model_id: str
    message: str = ""
    dropped: bool = True


def refine_outcome(data: Any) -> EmbedResult | RefineDropped:
    """Parse a refinement job's result: the refined :class:`EmbedResult`, or :class:`RefineDropped`."""
    if isinstance(data, dict) and data.get("dropped"):
        return RefineDropped.from_json(data)
    return EmbedResult.from_json(data)


# -- tag review -------------------------------------------------------------------------------------


@dataclass
class ReviewItem(Wire):
    """One question for the artist: does asset ``name`` have ``tag``? (``learnt`` False: a tag too rare
    for the classifiers yet, asked about assets like its examples.)"""

    name: str
    tag: str
    probability: float
    asset_id: int = 0
    source_file: str = ""
    asset_name: str = ""
    learnt: bool = True
    thumbnail_url: str | None = None


@dataclass
class ReviewQueue(Wire):
    """``GET /review``: the predictions least sure first; ``message`` says why the queue is empty."""

    model_id: str = ""
    items: list[ReviewItem] = field(default_factory=list)
    message: str = ""


@dataclass
class ReviewRequest(Wire):
    """``POST /review``: the artist's answer to one question."""

    name: str
    tag: str
    accept: bool
    limit: int = 10

    def check(self, where: str) -> None:
        nonempty(self.name, f"{where}.name")
        nonempty(self.tag, f"{where}.tag")
        if not 1 <= self.limit <= MAX_K:
            raise ApiError(f"{where}.limit: must be between 1 and {MAX_K}, got {self.limit}")


@dataclass
class ReviewResult(Wire):
    """``POST /review`` answer: the answer stored, the classifiers retrained, the next questions."""

    name: str
    tag: str
    accepted: bool
    model_id: str = ""
    previous_probability: float | None = None
    probability: float | None = None  # after retraining; None: the tag is not learnt yet
    retrained: bool = False
    message: str = ""
    queue: list[ReviewItem] = field(default_factory=list)
    queue_message: str = ""
    thumbnail_url: str | None = None


#: Every contract class, by name (documentation and tests).
CONTRACT: dict[str, type[Wire]] = {
    c.__name__: c for c in (
        ErrorReply, JobAccepted, JobStatus, QueueStats, ModelSummary, ModelInfo, ServerInfo, ModelEntry, ModelsList,
        RestoreRequest, TrainRequest, IndexRequest, TrainResult, BuildResult, Neighbour, NeighbourList,
        EmbedResult, RefineDropped, ReviewItem, ReviewQueue, ReviewRequest, ReviewResult,
    )
}
