"""Write an embedding result into an asset's metadata in the .blend, and undo exactly what was added.

Plain functions on an ID (object or collection). Everything Asset2Vec knows lives in one namespaced
custom property group ``id[metadata.NAMESPACE]``; the only thing written outside it here is the *accepted*
predicted tags, added to the Blender asset tags (``id.asset_data.tags``) (the Embed flow also sets the asset's
preview image: :mod:`blender_addon.asset_preview`). The artist's own tags and
description are never removed or changed: every tag Asset2Vec adds is listed under
``ADDED_TAGS``, and :func:`remove_predicted_tags` removes exactly those. A tag the artist already
had is never recorded as added, even when it was also predicted.

Which tags to propose is the backend's answer (``EmbedResult.proposed_tags``, computed once there); this module
only leaves out what the asset has meanwhile and what the artist rejected (:func:`proposed_for`).

A later answer (the refined one, or a re-embed) corrects what an earlier one wrote: a tag Asset2Vec added by itself
that the new answer predicts but no longer proposes is removed again (:func:`stale_tags`). Tags the artist accepted
(:func:`accept_tag`, recorded under :data:`ACCEPTED_TAGS`) are the artist's decision and stay, like the artist's own,
and so do the tags the backend's catalogue holds as the artist's (``EmbedResult.artist_tags``: e.g. accepted in the
review queue, possibly in another Blender): writing the answer records those as accepted too.
Each tag is written at its own calibrated threshold (``EmbedResult.threshold_of``); :func:`tag_reason` says why a
tag is added or removed, probability against that threshold.

Nothing here saves the file: the data is in the .blend when the artist saves (or the embed
operator's "Save after embedding" option calls Blender's own save).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .errors import AddonError
from .protocol import api
from .protocol import metadata as M

#: Blender limits IDProperty names (the keys of the predicted-tags group) to 63 bytes.
_MAX_KEY_BYTES = 63
#: Key in the namespace group (beside shared/metadata.py's): the fingerprint of the preview image Asset2Vec set
#: (:mod:`blender_addon.asset_preview`), so a preview the artist chose later is recognised and kept.
PREVIEW_FINGERPRINT = "preview_fingerprint"
#: Key in the namespace group: the added tags the artist accepted (a subset of ``ADDED_TAGS``). They are still
#: Asset2Vec's to undo (:func:`remove_predicted_tags`) but a later answer never removes them (:func:`stale_tags`).
ACCEPTED_TAGS = M.ACCEPTED_TAGS


class WritebackError(AddonError, ValueError):
    """The result cannot be written to this ID; the message says why."""


@dataclass
class WriteReport:
    """What :func:`write_result` did: tags added to the asset, whether it was marked, where data went."""

    name: str
    added: list[str] = field(default_factory=list)
    proposed: list[str] = field(default_factory=list)
    #: Tags an earlier answer added that this answer no longer proposes: removed again (:func:`stale_tags`).
    removed: list[str] = field(default_factory=list)
    #: Why each added or removed tag was (:func:`tag_reason`: its probability against its own threshold).
    reasons: dict[str, str] = field(default_factory=dict)
    marked: bool = False
    is_asset: bool = True
    #: Whether the asset's Blender preview was set from its captured views (None: not attempted).
    preview: bool | None = None
    #: What catalog assignment did (blender_addon.catalogs; '' when it is off).
    catalog: str = ""

    def summary(self) -> str:
        """One line for the status bar / operator report."""
        parts = [f"embedded {self.name!r}"]
        if self.marked:
            parts.append("marked it as an asset")
        if self.added:
            parts.append(f"added tag(s) {', '.join(self.added)}")
        elif self.proposed:
            parts.append(f"{len(self.proposed)} tag(s) to review")
        if self.removed:
            parts.append(f"removed {', '.join(self.removed)}")
        if self.preview is False:
            parts.append("kept its own preview")
        if self.catalog:
            parts.append(self.catalog)
        if not self.is_asset:
            parts.append("it is not marked as an asset, so tags and suggestions are stored in its custom property "
                         f"'{M.NAMESPACE}' only (enable 'Mark as Asset' to get real asset tags)")
        return "; ".join(parts)


def is_asset(id_: Any) -> bool:
    """Whether ``id_`` is marked as an asset (has asset metadata with tags)."""
    return getattr(id_, "asset_data", None) is not None


def asset_tags(id_: Any) -> list[str]:
    """The asset's current tag names (empty when it is not marked as an asset)."""
    return [t.name for t in id_.asset_data.tags] if is_asset(id_) else []


def read_metadata(id_: Any) -> dict[str, Any]:
    """Everything Asset2Vec stored on ``id_`` as plain Python (``{}`` when never embedded).

    JSON-string keys (neighbours, family members) are decoded.
    """
    group = id_.get(M.NAMESPACE) if hasattr(id_, "get") else None
    if group is None or not hasattr(group, "to_dict"):
        return {}
    data = group.to_dict()
    for key in (M.NEIGHBOURS, M.FAMILY_MEMBERS):
        if isinstance(data.get(key), str):
            try:
                data[key] = json.loads(data[key])
            except json.JSONDecodeError:
                data[key] = []
    for key in (M.ADDED_TAGS, M.REJECTED_TAGS):
        data[key] = [str(t) for t in data.get(key, [])]
    if ACCEPTED_TAGS in data:  # absent in files written before it existed (see _accepted)
        data[ACCEPTED_TAGS] = [str(t) for t in data[ACCEPTED_TAGS]]
    return data


def neighbours(id_: Any, space: str | None = None) -> list[dict[str, Any]]:
    """Stored similar-asset suggestions, nearest first: ``name`` (catalogue name), ``file`` (the .blend: the
    metadata's key, kept for files saved before), ``asset_name`` (Blender name), ``distance``, ``space``."""
    found = read_metadata(id_).get(M.NEIGHBOURS, [])
    return [n for n in found if space is None or n.get("space") == space]


def proposed_for(id_: Any, result: api.EmbedResult, threshold: float | None = None) -> list[str]:
    """The tags to propose for ``id_`` from ``result``, most probable first.

    The backend's ``proposed_tags`` (at its threshold, without the tags the asset had when captured), less the
    tags the asset has now or Asset2Vec added before, and the tags the artist rejected. ``threshold``: an own
    threshold instead of the backend's (then every predicted tag at or above it is a candidate).
    """
    old = read_metadata(id_)
    existing = set(asset_tags(id_)) | set(old.get(M.ADDED_TAGS, []))
    return _proposals(result, existing, set(old.get(M.REJECTED_TAGS, [])), threshold)


def candidates_of(result: api.EmbedResult, threshold: float | None = None) -> dict[str, float]:
    """The tags ``result`` proposes (tag -> probability): the backend's ``proposed_tags`` (its calibrated decision),
    or with an own ``threshold`` every predicted tag at or above it."""
    if threshold is None or threshold == result.threshold:
        return dict(result.proposed_tags)
    return {t: p for t, p in result.predicted_tags.items() if p >= threshold}  # the backend could not know it


def stale_tags(id_: Any, result: api.EmbedResult, threshold: float | None = None) -> list[str]:
    """Tags Asset2Vec added to ``id_`` by itself that ``result`` no longer proposes: what writing it removes.

    Only tags the new answer predicts (a tag it knows nothing about cannot be judged); never a tag the artist
    accepted, and never the artist's own (those are not in the added list).
    """
    data = read_metadata(id_)
    added = data.get(M.ADDED_TAGS, [])
    if is_asset(id_):  # a tag the artist deleted by hand is gone already (and becomes a rejection when written)
        added = [t for t in added if t in set(asset_tags(id_))]
    return _stale(added, set(_accepted(data, added)) | set(result.artist_tags), result, threshold)


def tag_reason(result: api.EmbedResult, tag: str, added: bool, threshold: float | None = None) -> str:
    """Why ``tag`` is added (``added``) or removed when ``result`` is written: its probability against the threshold it
    is written at (its own calibrated one, or the caller's ``threshold``), or the backend's reason (an exclusive
    group's more probable member...)."""
    p = float(result.predicted_tags.get(tag, 0.0))
    th = threshold if threshold is not None else result.threshold_of(tag)
    whose = "the" if threshold is not None else "its"  # the caller's own threshold, or the tag's calibrated one
    if added:
        return f"added: p {p:.2f} >= {whose} threshold {th:.2f}" if th is not None else f"added: p {p:.2f}"
    why = result.tag_reasons.get(tag, "") if threshold is None else ""
    if th is None:
        rule = "never written (a suggestion only: it does not reach the target precision)"
    elif p < th:
        rule = f"< {whose} threshold {th:.2f}"
    else:
        rule = f">= {whose} threshold {th:.2f} but not written"
    detail = f" ({why.removeprefix('suggested: ')})" if "exclusive" in why else ""
    return f"removed: p {p:.2f} {rule}{detail} (added by an earlier answer)"


def _accepted(data: dict[str, Any], added: list[str]) -> list[str]:
    """The added tags the artist accepted, in order. Files written before Asset2Vec kept them apart (no
    ``accepted_tags`` key) cannot tell accepted from auto-added ones: all their added tags count as accepted, so
    none is ever removed."""
    return [str(t) for t in data.get(ACCEPTED_TAGS, added)]


def _stale(added: list[str], accepted: set[str], result: api.EmbedResult, threshold: float | None) -> list[str]:
    keep = candidates_of(result, threshold)
    return [t for t in added if t not in accepted and t in result.predicted_tags and t not in keep]


def _proposals(result: api.EmbedResult, existing: set[str], rejected: set[str], threshold: float | None) -> list[str]:
    candidates = candidates_of(result, threshold)
    return sorted((t for t in candidates if t not in existing and t not in rejected and _fits_key(t)),
                  key=lambda t: (-candidates[t], t))


def _fits_key(tag: str) -> bool:
    return len(tag.encode()) <= _MAX_KEY_BYTES


def write_result(
    id_: Any,
    result: api.EmbedResult,
    *,
    auto_accept: bool = True,
    threshold: float | None = None,
    mark_as_asset: bool = False,
    family_members: list[dict[str, Any]] | None = None,
) -> WriteReport:
    """Store an embedding ``result`` (the backend's typed embed answer) on ``id_``.

    ``auto_accept``: add the proposed tags (:func:`proposed_for`) to the asset's tags (recorded as added);
    ``threshold``: an own threshold instead of the backend's. ``mark_as_asset``: mark a plain object/collection
    as an asset first; otherwise an unmarked ID keeps everything in the custom property only. Re-embedding keeps
    what was added before (so it can still be removed) and never re-proposes a rejected tag; a tag added before by
    Asset2Vec itself (not accepted by the artist) that this answer no longer proposes is removed
    (:func:`stale_tags`, ``WriteReport.removed``).
    """
    if not hasattr(id_, "asset_mark"):
        raise WritebackError(f"{getattr(id_, 'name', id_)!r} cannot hold asset metadata (only objects, collections, "
                             f"materials... can)")
    marked = False
    if mark_as_asset and not is_asset(id_):
        id_.asset_mark()
        marked = True
    old = read_metadata(id_)
    old_added = list(old.get(M.ADDED_TAGS, []))
    rejected = list(old.get(M.REJECTED_TAGS, []))
    if is_asset(id_):
        current = set(asset_tags(id_))
        added = [t for t in old_added if t in current]
        # A tag we added that the artist has since deleted by hand is a rejection: never re-add it.
        rejected += [t for t in old_added if t not in current and t not in rejected]
    else:
        added = old_added
    # The catalogue's artist tags (e.g. accepted in the review queue) are the artist's: recorded as accepted here.
    accepted = [t for t in _accepted(old, added) if t in added]
    accepted += [t for t in added if t in set(result.artist_tags) and t not in accepted]
    removed = _stale(added, set(accepted), result, threshold)
    for tag in removed:
        _remove_tag(id_, tag)
    added = [t for t in added if t not in removed]
    predicted = {t: p for t, p in result.predicted_tags.items() if _fits_key(t)}
    proposed = _proposals(result, set(asset_tags(id_)) | set(added), set(rejected), threshold)

    new_added: list[str] = []
    if auto_accept:
        for tag in proposed:
            if _add_tag(id_, tag):
                new_added.append(tag)
    flat = [_stored_neighbour(n, space) for space in api.SPACES for n in result.neighbours.get(space, [])]
    group: dict[str, Any] = {
        M.CODE_SHAPE: list(result.shape),
        M.CODE_TEXTURE: list(result.texture),
        M.MODEL_ID: result.model_id,
        M.ASSET_NAME: result.name,  # the catalogue name (the metadata key predates the wire's glossary)
        M.CODE_SOURCE: result.code_source,
        M.PREDICTED_TAGS: predicted,
        M.ADDED_TAGS: added + [t for t in new_added if t not in added],
        M.REJECTED_TAGS: list(rejected),
        ACCEPTED_TAGS: accepted,
        M.NEIGHBOURS: json.dumps(flat),
        M.CONTENT_HASH: result.content_hash,
        M.TIMESTAMP: datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if family_members is not None:
        group[M.FAMILY_MEMBERS] = json.dumps(family_members)
    elif old.get(M.FAMILY_MEMBERS):  # a family embedded before keeps its members when embedded alone
        group[M.FAMILY_MEMBERS] = json.dumps(old[M.FAMILY_MEMBERS])
    if old.get(PREVIEW_FINGERPRINT):  # the preview Asset2Vec set stays recognisable as its own
        group[PREVIEW_FINGERPRINT] = str(old[PREVIEW_FINGERPRINT])
    id_[M.NAMESPACE] = group
    reasons = {t: tag_reason(result, t, True, threshold) for t in new_added}
    reasons.update({t: tag_reason(result, t, False, threshold) for t in removed})
    return WriteReport(name=id_.name, added=new_added, proposed=[t for t in proposed if t not in new_added],
                       removed=removed, reasons=reasons, marked=marked, is_asset=is_asset(id_))


def _stored_neighbour(n: api.Neighbour, space: str) -> dict[str, Any]:
    """A neighbour as stored in the metadata (``file``: the metadata's key for the .blend), with what the Similar
    panel's filter can match: category, family, and the neighbour's tags when the backend sends them."""
    stored: dict[str, Any] = {"name": n.name, "file": n.source_file, "asset_name": n.asset_name,
                              "distance": n.distance, "space": space}
    if n.category:
        stored["category"] = n.category
    if n.family:
        stored["family"] = n.family
    if n.copies > 1:  # one object saved in several files: the Similar list says "x n copies"
        stored["copies"] = int(n.copies)
    tags = getattr(n, "tags", None)  # not on the wire today: the filter then matches names and categories
    if tags:
        stored["tags"] = [str(t) for t in tags]
    return stored


def pending_tags(id_: Any, threshold: float = 0.0) -> list[tuple[str, float, str]]:
    """Every predicted tag with its probability and state (``added``, ``artist``, ``rejected``, ``proposed``).

    Sorted by probability, highest first; only tags with probability at or above ``threshold``.
    """
    data = read_metadata(id_)
    added, rejected, tags = set(data.get(M.ADDED_TAGS, [])), set(data.get(M.REJECTED_TAGS, [])), set(asset_tags(id_))
    out = []
    for tag, p in sorted((data.get(M.PREDICTED_TAGS) or {}).items(), key=lambda kv: (-kv[1], kv[0])):
        if p < threshold:
            continue
        state = "added" if tag in added else "artist" if tag in tags else "rejected" if tag in rejected else "proposed"
        out.append((tag, float(p), state))
    return out


def accept_tag(id_: Any, tag: str) -> bool:
    """Accept a predicted tag: add it to the asset's tags and record it as added and accepted (a later answer then
    never removes it). False if already there (an added tag is still recorded as accepted)."""
    data = _group(id_)
    added = [str(t) for t in data.get(M.ADDED_TAGS, [])]
    accepted = [str(t) for t in data.get(ACCEPTED_TAGS, [])]
    if tag in added and tag not in accepted:
        data[ACCEPTED_TAGS] = accepted + [tag]
    if tag in added or tag in asset_tags(id_):
        return False
    if is_asset(id_):
        _add_tag(id_, tag)
    data[M.ADDED_TAGS] = added + [tag]
    data[ACCEPTED_TAGS] = accepted + [tag]
    data[M.REJECTED_TAGS] = [str(t) for t in data.get(M.REJECTED_TAGS, []) if str(t) != tag]
    return True


def reject_tag(id_: Any, tag: str) -> bool:
    """Reject a predicted tag: remove it if Asset2Vec added it (never an artist's tag) and never propose it again."""
    data = _group(id_)
    added = [str(t) for t in data.get(M.ADDED_TAGS, [])]
    removed = False
    if tag in added:
        _remove_tag(id_, tag)
        data[M.ADDED_TAGS] = [t for t in added if t != tag]
        removed = True
    if tag in [str(t) for t in data.get(ACCEPTED_TAGS, [])]:
        data[ACCEPTED_TAGS] = [str(t) for t in data.get(ACCEPTED_TAGS, []) if str(t) != tag]
    rejected = [str(t) for t in data.get(M.REJECTED_TAGS, [])]
    if tag not in rejected:
        data[M.REJECTED_TAGS] = rejected + [tag]
    return removed


def remove_predicted_tags(id_: Any) -> list[str]:
    """Remove exactly the tags Asset2Vec added (the artist's own tags stay); returns the removed tags."""
    group = id_.get(M.NAMESPACE)
    if group is None:
        return []
    added = [str(t) for t in group.get(M.ADDED_TAGS, [])]
    removed = [t for t in added if _remove_tag(id_, t)]
    group[M.ADDED_TAGS] = []
    group[ACCEPTED_TAGS] = []
    return removed


def _group(id_: Any) -> Any:
    group = id_.get(M.NAMESPACE)
    if group is None:
        raise WritebackError(f"{id_.name!r} has no Asset2Vec data yet: embed it first")
    return group


def _add_tag(id_: Any, tag: str) -> bool:
    """Add ``tag`` to the asset tags; False when not an asset or the tag is already there."""
    if not is_asset(id_) or tag in asset_tags(id_):
        return False
    id_.asset_data.tags.new(tag, skip_if_exists=True)
    return True


def _remove_tag(id_: Any, tag: str) -> bool:
    if not is_asset(id_):
        return False
    found = id_.asset_data.tags.get(tag)
    if found is None:
        return False
    id_.asset_data.tags.remove(found)
    return True
