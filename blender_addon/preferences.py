"""The add-on's preferences: backend URL and token, zeroconf discovery, the view size and samples of every
capture (Capture, Embed, Bulk Tag: the one place they are set).

``bl_idname`` must be the add-on's module name: ``bl_ext.user_default.asset2vec`` when installed as an
extension, ``blender_addon`` when registered from the source folder (tests, headless workers). When
registered without Blender's add-on machinery (``blender_addon.register()``), :func:`register`
adds the add-on entry itself so ``context.preferences.addons[ADDON_ID].preferences`` exists.
"""

from __future__ import annotations

import shutil
from typing import Any

import bpy
from bpy.props import BoolProperty, CollectionProperty, FloatProperty, IntProperty, StringProperty

from . import session
from .protocol import bundle
from .protocol import client as remote
from .tasks import BackgroundTask

#: The add-on's module name (the package this file belongs to).
ADDON_ID: str = __package__ or "blender_addon"
_added_entry = False  # whether register() created the add-on entry (so unregister removes it)
DISCOVERY_SLOT = "discover"


class Asset2VecFoundBackend(bpy.types.PropertyGroup):
    """One backend found by Discover."""

    name: StringProperty(name="Name")  # type: ignore[valid-type]
    url: StringProperty(name="URL")  # type: ignore[valid-type]
    model: StringProperty(name="Model")  # type: ignore[valid-type]
    device: StringProperty(name="Device")  # type: ignore[valid-type]
    token_required: BoolProperty(name="Needs a Token")  # type: ignore[valid-type]


class Asset2VecPreferences(bpy.types.AddonPreferences):
    """Where the backend is and how Embed captures."""

    bl_idname = ADDON_ID

    backend_url: StringProperty(  # type: ignore[valid-type]
        name="Backend URL",
        description="Address of the Asset2Vec backend, as `asset2vec serve` prints it (with or without /v1; it "
                    "serves the starter model until your library has its own)",
        default=remote.DEFAULT_URL,
    )
    token: StringProperty(  # type: ignore[valid-type]
        name="Token",
        description="Token of a backend serving on the network (not needed for one on this machine)",
        default="",
        subtype="PASSWORD",
    )
    discovered: CollectionProperty(type=Asset2VecFoundBackend)  # type: ignore[valid-type]
    discover_message: StringProperty(default="")  # type: ignore[valid-type]
    # The one view size/samples setting: Capture, Embed and Bulk Tag all use it (the scene settings' properties of
    # the same names only read and write these).
    capture_size: IntProperty(  # type: ignore[valid-type]
        name="View Size",
        description="Width and height in pixels of each of the 18 views that Capture, Embed and Bulk Tag render",
        default=128,
        min=bundle.MIN_IMAGE_SIZE,
        max=bundle.MAX_IMAGE_SIZE,
    )
    capture_samples: IntProperty(  # type: ignore[valid-type]
        name="Samples",
        description="Cycles samples per pixel for the captured views (more is slower and less noisy)",
        default=16,
        min=1,
        max=4096,
    )
    timeout: FloatProperty(  # type: ignore[valid-type]
        name="Request Timeout",
        description="Seconds to wait for one answer from the backend",
        default=30.0,
        min=1.0,
        max=600.0,
    )

    # Catalog assignment (blender_addon.catalogs): off by default; never replaces a catalog the artist chose.
    assign_catalog: BoolProperty(  # type: ignore[valid-type]
        name="Assign Catalog",
        description="After Embed, put an asset that has no catalog into the catalog of its category (a category tag "
                    "it carries) in its library's blender_assets.cats.txt, adding the catalog if missing (the file is "
                    "backed up as blender_assets.cats.txt~). A catalog you chose is never replaced",
        default=False,
    )
    category_tags: StringProperty(  # type: ignore[valid-type]
        name="Category Tags",
        description="The tags that name a category, for Assign Catalog (comma-separated; empty: chair, table, sofa, "
                    "lamp, bed, cabinet, shelf, desk, stool, bench, wardrobe, plant, door, window)",
        default="",
    )

    asset2vec_command: StringProperty(  # type: ignore[valid-type]
        name="asset2vec Command",
        description="The installed `asset2vec` executable that Bulk Tag Folder runs (e.g. .venv/bin/asset2vec of "
                    "your Asset2Vec checkout; `python build.py demo` sets it up); empty: the one on PATH",
        default=shutil.which("asset2vec") or "",
        subtype="FILE_PATH",
    )

    def draw(self, context: Any) -> None:
        layout = self.layout
        col = layout.column()
        col.prop(self, "backend_url")
        col.prop(self, "token")
        row = layout.row()
        row.operator("asset2vec.discover", icon="VIEWZOOM")
        row.operator("asset2vec.check_backend", icon="FILE_REFRESH")
        if self.discover_message:
            layout.label(text=self.discover_message, icon="INFO")
        for i, found in enumerate(self.discovered):
            row = layout.row()
            lock = " (token)" if found.token_required else ""
            row.label(text=f"{found.name}: {found.url}  model {found.model} on {found.device}{lock}", icon="URL")
            row.operator("asset2vec.use_backend", text="Use").index = i
        col = layout.column(align=True)
        col.prop(self, "capture_size")
        col.prop(self, "capture_samples")
        layout.prop(self, "timeout")
        layout.prop(self, "asset2vec_command")
        col = layout.column(align=True)
        col.prop(self, "assign_catalog")
        row = col.row()
        row.enabled = self.assign_catalog
        row.prop(self, "category_tags")


def get(context: Any = None) -> Any:
    """The add-on's preferences (an :class:`Asset2VecPreferences`), or None when not registered."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None


def view_settings(context: Any = None) -> tuple[int, int]:
    """``(view size, samples)`` of the captured views: the one setting, in the preferences (defaults: 128, 16)."""
    prefs = get(context)
    if prefs is None:
        return 128, 16
    return int(prefs.capture_size), int(prefs.capture_samples)


def catalog_settings(context: Any = None) -> tuple[bool, tuple[str, ...]]:
    """``(assign catalog?, category tags)`` for Embed (off, and the default tags, when unavailable)."""
    from .catalogs import parse_tags

    prefs = get(context)
    if prefs is None:
        return False, parse_tags("")
    return bool(prefs.assign_catalog), parse_tags(prefs.category_tags)


def connection(context: Any = None) -> tuple[str, str | None, float]:
    """``(url, token, timeout)`` from the preferences (defaults when unavailable). The URL is normalised (the
    ``/v1`` the server prints may be pasted); one that is no URL is passed on for the client to report."""
    prefs = get(context)
    if prefs is None:
        return remote.DEFAULT_URL, None, 30.0
    try:
        url = remote.normalize_url(prefs.backend_url)
    except remote.BackendError:
        url = prefs.backend_url
    return url, (prefs.token or None), float(prefs.timeout)


def fill_discovered(prefs: Any, found: list[remote.Discovered]) -> None:
    """Replace ``prefs.discovered`` with ``found`` (``[(name, url, txt)]`` from ``shared.client.discover``)."""
    prefs.discovered.clear()
    for name, url, txt in found:
        item = prefs.discovered.add()
        item.name, item.url = name, url
        item.model, item.device = txt.get("model", ""), txt.get("device", "")
        item.token_required = txt.get("token") == "1"
    prefs.discover_message = (f"found {len(found)} backend(s)" if found else
                              "no backend answered: start one with `asset2vec serve`, or enter its URL by hand")


class Discovery(BackgroundTask):
    """One zeroconf browse in a worker thread (browsing waits for answers: never on the UI thread)."""

    title = "looking for backends"
    cancel_on_timeout = False

    def __init__(self, timeout: float, interfaces: list[str] | None) -> None:
        super().__init__(f"looking for backends ({timeout:.0f} s)...")
        self.timeout, self.interfaces = timeout, interfaces
        self.found: list[remote.Discovered] = []

    def work(self) -> None:
        self.found = remote.discover(timeout=self.timeout, interfaces=self.interfaces)


def _show_discovery(task: BackgroundTask) -> None:
    """Main thread: copy the browse's results into the preferences once it has finished."""
    assert isinstance(task, Discovery)
    prefs = get()
    if prefs is None:
        return
    if task.error is not None:
        prefs.discovered.clear()
        prefs.discover_message = task.error
    else:
        fill_discovered(prefs, task.found)  # the session's timer redraws the preferences window next


def wait_for_discovery(timeout: float = 15.0) -> None:
    """Block until the running browse ends and apply it (headless use and tests; the UI uses the session's timer)."""
    session.get().pump(DISCOVERY_SLOT, timeout)


class ASSET2VEC_OT_discover(bpy.types.Operator):
    """Look for Asset2Vec backends on this machine and the local network (zeroconf), in the background"""

    bl_idname = "asset2vec.discover"
    bl_label = "Discover Backends"
    bl_options = {"REGISTER", "INTERNAL"}

    timeout: FloatProperty(name="Timeout", default=2.0, min=0.2, max=10.0)  # type: ignore[valid-type]
    interfaces: StringProperty(  # type: ignore[valid-type]
        name="Interfaces", description="Comma-separated IPv4 addresses to browse on (empty: all)", default=""
    )

    def execute(self, context: Any) -> set[str]:
        prefs = get(context)
        if prefs is None:
            self.report({"ERROR"}, "Asset2Vec: the add-on's preferences are not available (enable the add-on)")
            return {"CANCELLED"}
        sess = session.get()
        if sess.running(DISCOVERY_SLOT):
            self.report({"WARNING"}, "Asset2Vec: already looking for backends")
            return {"CANCELLED"}
        interfaces = [s.strip() for s in self.interfaces.split(",") if s.strip()] or None
        task = Discovery(self.timeout, interfaces)
        task.on_finish.append(_show_discovery)
        sess.start(DISCOVERY_SLOT, task)
        prefs.discover_message = task.message
        self.report({"INFO"}, f"Asset2Vec: {prefs.discover_message}")
        return {"FINISHED"}


class ASSET2VEC_OT_use_backend(bpy.types.Operator):
    """Use this discovered backend"""

    bl_idname = "asset2vec.use_backend"
    bl_label = "Use Backend"
    bl_options = {"REGISTER", "INTERNAL"}

    index: IntProperty(default=0, min=0)  # type: ignore[valid-type]

    def execute(self, context: Any) -> set[str]:
        prefs = get(context)
        if prefs is None or self.index >= len(prefs.discovered):
            self.report({"ERROR"}, "Asset2Vec: that backend is no longer listed; press Discover again")
            return {"CANCELLED"}
        found = prefs.discovered[self.index]
        prefs.backend_url = found.url
        note = " (it needs a token: enter it below)" if found.token_required and not prefs.token else ""
        self.report({"INFO"}, f"Asset2Vec: using {found.name} at {found.url}{note}")
        return {"FINISHED"}


classes = (Asset2VecFoundBackend, Asset2VecPreferences, ASSET2VEC_OT_discover, ASSET2VEC_OT_use_backend)


def register() -> None:
    """Make sure the preferences have an add-on entry when registered outside Blender's add-on manager."""
    global _added_entry
    addons = bpy.context.preferences.addons
    if addons.get(ADDON_ID) is None:
        addons.new().module = ADDON_ID
        _added_entry = True


def unregister() -> None:
    global _added_entry
    if _added_entry:
        addons = bpy.context.preferences.addons
        entry = addons.get(ADDON_ID)
        if entry is not None:
            addons.remove(entry)
        _added_entry = False
