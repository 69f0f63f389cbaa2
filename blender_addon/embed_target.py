"""The asset an Embed is about, its options, and how the backend's answer(s) are written into it.

Shared by the Embed flow (:mod:`blender_addon.embed_job`, the first answer) and the refinement
(:mod:`blender_addon.refinement`, the refined answer that replaces an instant one): both hold the asset by
name (:class:`Target`), combine a family's variant answers the same way (:func:`combine_family`) and write
with :func:`blender_addon.writeback.write_result` as one undo step, saving with Blender's own save if asked.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import bpy

from . import asset_preview, catalogs, writeback
from .errors import AddonError
from .protocol import api
from .protocol import metadata as M
from .writeback import WriteReport, write_result


class EmbedError(AddonError, ValueError):
    """The embed cannot start or go on; the message says what to fix."""


@dataclass
class Target:
    """The asset being embedded, held by name (an ID pointer may not survive undo while the job runs)."""

    kind: str  # "OBJECT" or "COLLECTION"
    name: str
    blend: str = ""  # the .blend it lives in ("" when unsaved): another file opened meanwhile has other IDs

    @classmethod
    def of(cls, id_: Any) -> Target:
        return cls("COLLECTION" if isinstance(id_, bpy.types.Collection) else "OBJECT", id_.name, bpy.data.filepath)

    @property
    def key(self) -> tuple[str, str, str]:
        """Identifies the asset across embeds (its refinement is kept under this key)."""
        return (self.blend, self.kind, self.name)

    def resolve(self) -> Any:
        """The ID, or None if it was deleted or renamed meanwhile, or another file was opened."""
        if bpy.data.filepath != self.blend:
            return None
        return (bpy.data.collections if self.kind == "COLLECTION" else bpy.data.objects).get(self.name)


@dataclass
class Options:
    """How to capture and write back (from the operator's options and the add-on preferences)."""

    url: str
    token: str | None = None
    timeout: float = 30.0
    size: int = 128
    samples: int = 16
    family: bool = False
    variants: int = 4
    family_mode: str = "grid"
    auto_accept: bool = True
    mark_as_asset: bool = False
    save_after: bool = False
    #: Put the asset into the catalog of its category (:mod:`blender_addon.catalogs`; off by default).
    assign_catalog: bool = False
    category_tags: tuple[str, ...] = ()


def combine_family(results: list[api.EmbedResult], plan: list[dict[str, Any] | None]) -> tuple[api.EmbedResult,
                                                                                               list[dict[str, Any]]]:
    """One result for the family object from its variants' results, plus the member list.

    The family's code is the mean of its variants' codes (shape [32], texture [32]); a tag's probability is its
    mean over the variants, and it is proposed only when the backend proposed it for every variant: its decision
    (a calibrated per-tag threshold, at most one tag of an exclusive group, not a tag the asset has) then holds for
    the family too. The neighbours are those of the first variant.
    """
    n = len(results)
    first = results[0]
    tags = sorted({t for r in results for t in r.predicted_tags})
    predicted = {t: sum(r.predicted_tags.get(t, 0.0) for r in results) / n for t in tags}
    proposed_everywhere = set.intersection(*(set(r.proposed_tags) for r in results))
    combined = replace(
        first,
        shape=[sum(r.shape[k] for r in results) / n for k in range(len(first.shape))],
        texture=[sum(r.texture[k] for r in results) / n for k in range(len(first.texture))],
        predicted_tags=predicted,
        proposed_tags={t: p for t, p in predicted.items() if t in proposed_everywhere},
    )
    members = [
        {"name": r.name, "parameters": p or {}, "code_shape": r.shape, "code_texture": r.texture,
         "predicted_tags": r.predicted_tags, "psnr": r.psnr}
        for r, p in zip(results, plan, strict=True)
    ]
    return combined, members


def write_answers(obj: Any, results: dict[int, api.EmbedResult], plan: list[dict[str, Any] | None],
                  options: Options, undo_name: str, mark_as_asset: bool = False,
                  preview: Path | None = None) -> WriteReport:
    """Write the answers (plan index -> backend answer) into ``obj``: one answer, or a family's combined one.

    ``preview``: the captured thumbnail view (PNG) to make the asset's Blender preview
    (:func:`blender_addon.asset_preview.set_from_png`; a preview the artist chose is kept). With
    ``options.assign_catalog`` the asset is put into its category's catalog (:func:`blender_addon.catalogs.assign`).
    """
    answers = [results[i] for i in sorted(results)]
    if options.family:
        result, members = combine_family(answers, plan)
    else:
        result, members = answers[0], None
    assigned = catalogs.recorded(obj)  # writing rebuilds the asset's Asset2Vec data: read its catalog record first
    report = write_result(obj, result, auto_accept=options.auto_accept, mark_as_asset=mark_as_asset,
                          family_members=members)
    if options.assign_catalog:
        added = set(writeback.read_metadata(obj).get(M.ADDED_TAGS, []))
        artist = {t.name for t in obj.asset_data.tags} - added if obj.asset_data is not None else set()
        report.catalog = catalogs.assign(obj, result, bpy.data.filepath, options.category_tags
                                         or catalogs.DEFAULT_CATEGORY_TAGS, previous=assigned, artist_tags=artist)
    else:
        catalogs.keep_record(obj, assigned)
    if preview is not None and preview.is_file():
        report.preview = asset_preview.set_from_png(obj, preview)
    undo_push(undo_name)
    return report


def save_file(backup: bool = True) -> str:
    """Save with Blender's own save (so .blend1 backups and undo behave as usual); returns a status phrase.

    ``backup=False``: this save makes no .blend1 (the refinement's save after the Embed's: the backup stays the
    file as it was before the Embed, not its instant version). Blender has no per-save option for it, so the
    preference "Save Versions" is 0 for this one save and restored at once.
    """
    if not bpy.data.filepath:
        return "not saved: this file has never been saved (save it once, then the data is stored with it)"
    paths = bpy.context.preferences.filepaths
    versions = paths.save_version
    try:
        if not backup:
            paths.save_version = 0
        bpy.ops.wm.save_mainfile()
    except RuntimeError as e:
        return f"saving failed: {e}"
    finally:
        paths.save_version = versions
    return f"saved {bpy.path.basename(bpy.data.filepath)}"


def undo_push(message: str) -> None:
    """Make the write-back one undo step (timers run outside any operator)."""
    try:
        bpy.ops.ed.undo_push(message=message)
    except RuntimeError:  # no window (headless): there is no undo stack to push to
        pass
