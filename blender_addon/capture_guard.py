"""The temporary datablocks of running captures (:class:`blender_addon.capture.Capture`): never in a saved file,
never outliving a file load, an undo or a redo.

Before a save, load, undo or redo (Blender's handlers) every running capture tears its render scene down (built
again at its next step). Every datablock a capture creates carries :data:`TMP_PROP`, so one that an undo step or
an autosave taken mid-capture brings back is removed after the undo, redo or load (:func:`remove_stale`; these
handlers stay registered with the add-on, since an undo to such a step can come after every capture ended).
Rendering creates a "Render Result" image: the last capture to close removes it if the file had none before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import bpy

if TYPE_CHECKING:
    from .capture import Capture


def removal_order(coll: Any) -> int:
    """Objects first (they use the other datablocks), scenes last."""
    return 0 if coll == bpy.data.objects else 2 if coll == bpy.data.scenes else 1


#: The custom property on every datablock a capture creates (none of them is ever the artist's).
TMP_PROP = "asset2vec_capture_tmp"
_TMP_KINDS = ("objects", "meshes", "lights", "cameras", "worlds", "scenes")


def remove_stale() -> int:
    """Remove every capture datablock (:data:`TMP_PROP`) that no running capture owns; how many were removed.

    An undo step pushed while a capture's scene existed, or an autosave written then, holds those datablocks:
    restoring it must not give the artist a stray "Asset2Vec Capture" scene.
    """
    owned = set()
    for capture in _live:
        for _, block in capture._created:
            with contextlib.suppress(ReferenceError):
                owned.add(block.as_pointer())
    stale = []
    for kind in _TMP_KINDS:
        coll = getattr(bpy.data, kind)
        stale += [(coll, b) for b in coll if b.get(TMP_PROP) and b.as_pointer() not in owned]
    for coll, block in sorted(stale, key=lambda cb: removal_order(cb[0])):
        with contextlib.suppress(ReferenceError):
            coll.remove(block)
    return len(stale)


# -- Blender's handlers: temporary datablocks never reach a saved file nor outlive a load or undo ------------

_live: list[Capture] = []
_HANDLERS = ("save_pre", "load_pre", "undo_pre", "redo_pre")
#: After these (and ``load_post``), stale capture datablocks are removed (:func:`remove_stale`): registered with
#: the add-on (:func:`register_handlers`; an undo to a step taken mid-capture can come after every capture ended)
#: and while a capture runs.
_POST_HANDLERS = ("undo_post", "redo_post")
#: Whether the file had a "Render Result" image before the first of the running captures began (None: none runs).
#: Rendering creates one: the last capture to close removes it again if it was not there.
_had_render_result: bool | None = None


def _has_render_result() -> bool:
    return any(img.type == "RENDER_RESULT" for img in bpy.data.images)


def _remove_render_result() -> None:
    if _had_render_result is False:
        for img in [img for img in bpy.data.images if img.type == "RENDER_RESULT"]:
            bpy.data.images.remove(img)


@bpy.app.handlers.persistent
def _suspend_captures(*_args: Any) -> None:
    """Before a save, load, undo or redo: remove every running capture's temporary datablocks (built again at the
    capture's next step), and the Render Result the captures made."""
    for capture in list(_live):
        capture._tear_down()
    if _live:
        _remove_render_result()


@bpy.app.handlers.persistent
def _before_load(*_args: Any) -> None:
    """Before another file loads: the running captures' assets are gone (one by the same name is another asset)."""
    for capture in _live:
        capture._file_changed = True


@bpy.app.handlers.persistent
def _remove_stale_handler(*_args: Any) -> None:
    """After an undo, a redo or a file load: no capture datablock that no running capture owns stays."""
    remove_stale()


@bpy.app.handlers.persistent
def _after_load(*_args: Any) -> None:
    """After a file load: no stale capture datablock; a Render Result the loaded file has is the artist's."""
    global _had_render_result
    remove_stale()
    if _live:
        _had_render_result = _has_render_result()


def _add_handlers(names: tuple[str, ...], fn: Callable[..., None]) -> None:
    for h in names:
        handlers = getattr(bpy.app.handlers, h)
        if fn not in handlers:
            handlers.append(fn)


def _remove_handlers(names: tuple[str, ...], fn: Callable[..., None]) -> None:
    for h in names:
        handlers = getattr(bpy.app.handlers, h)
        while fn in handlers:
            handlers.remove(fn)


_addon_registered = False


def register_handlers() -> None:
    """The add-on's register: stale capture datablocks are removed after every undo, redo and file load."""
    global _addon_registered
    _addon_registered = True
    _add_handlers(_POST_HANDLERS, _remove_stale_handler)
    _add_handlers(("load_post",), _after_load)


def unregister_handlers() -> None:
    global _addon_registered
    _addon_registered = False
    if not _live:
        _remove_handlers(_POST_HANDLERS, _remove_stale_handler)
        _remove_handlers(("load_post",), _after_load)


def watch(capture: Capture) -> None:
    """``capture`` runs: its datablocks are owned, the handlers are in place."""
    global _had_render_result
    if not _live:
        _had_render_result = _has_render_result()
        _add_handlers(_HANDLERS, _suspend_captures)
        _add_handlers(("load_pre",), _before_load)
        _add_handlers(_POST_HANDLERS, _remove_stale_handler)
        _add_handlers(("load_post",), _after_load)
    if capture not in _live:
        _live.append(capture)


def unwatch(capture: Capture) -> None:
    """``capture`` closed: the last one removes the handlers (but the add-on's) and the Render Result it made."""
    global _had_render_result
    if capture not in _live:
        return
    _live.remove(capture)
    if not _live:
        _remove_render_result()
        _had_render_result = None
        _remove_handlers(_HANDLERS, _suspend_captures)
        _remove_handlers(("load_pre",), _before_load)
        if not _addon_registered:
            _remove_handlers(_POST_HANDLERS, _remove_stale_handler)
            _remove_handlers(("load_post",), _after_load)
