"""Which predicted tags are written into an artist's file and which are only suggested (issue 17).

A written tag is a claim the studio searches by, so a tag is written only when its classifier has
shown, out of fold, that at its probability it is right at least ``target_precision`` of the time:

* :func:`write_threshold`: per tag, the lowest probability (>= 0.5) whose out-of-fold precision,
  Laplace-smoothed (``(right + 1) / (predicted + 2)``: a uniform prior) over at least
  :data:`MIN_WRITE_SUPPORT` predictions, reaches the target. A tag that never does has no write
  threshold: it is a suggestion only (a noise tag's lucky top prediction does not make it writable).
* :func:`learn_exclusive_groups`: tags that never co-occur on fully artist-tagged assets although each
  is common (>= :data:`MIN_GROUP_POSITIVES` assets) and independence would expect them together on
  >= :data:`MIN_EXPECTED_OVERLAP` assets (3-legs / 4-legs). Groups may also be declared (tag lists).
* :func:`decide`: the one decision every surface uses: write a tag when it is at or over its
  threshold, is the most probable of each of its exclusive groups and no group member is already an
  asset's tag; suggest the other likely ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

DEFAULT_TARGET_PRECISION = 0.9
SUGGEST_THRESHOLD = 0.5  # shown as a suggestion from here (the old single threshold)
MIN_WRITE_SUPPORT = 3  # out-of-fold predictions at or over a write threshold
PRIOR_RIGHT, PRIOR_WRONG = 1.0, 1.0  # Laplace smoothing of the out-of-fold precision (a uniform prior)
MIN_GROUP_POSITIVES = 5
MIN_EXPECTED_OVERLAP = 2.0


def write_threshold(y: np.ndarray, p: np.ndarray, target: float = DEFAULT_TARGET_PRECISION,
                    floor: float = SUGGEST_THRESHOLD) -> dict[str, float | int | None]:
    """``{"threshold", "precision", "recall", "support"}`` from out-of-fold labels ``y`` and probabilities ``p``.

    ``threshold`` None: no probability reaches ``target`` (precision/recall then describe the strictest
    candidate, for the report). Ties share a threshold (all assets at a probability are written or none).
    """
    y, p = np.asarray(y, int), np.asarray(p, np.float64)
    pos = int(y.sum())
    none: dict[str, float | int | None] = {"threshold": None, "precision": None, "recall": None, "support": 0}
    if pos == 0 or not len(y):
        return none
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    tp = np.cumsum(ys)
    n = np.arange(1, len(ys) + 1)
    last_of_tie = np.r_[ps[1:] < ps[:-1], True]
    valid = last_of_tie & (ps >= floor)
    if not valid.any():
        return none
    shrunk = (tp + PRIOR_RIGHT) / (n + PRIOR_RIGHT + PRIOR_WRONG)
    ok = valid & (shrunk >= target) & (n >= MIN_WRITE_SUPPORT)
    i = int(np.flatnonzero(ok)[-1]) if ok.any() else int(np.flatnonzero(valid)[0])
    return {"threshold": float(ps[i]) if ok.any() else None, "precision": float(tp[i] / n[i]),
            "recall": float(tp[i] / pos), "support": int(n[i])}


def learn_exclusive_groups(tag_sets: Sequence[set[str] | None], partial: Sequence[bool] | None = None,
                           min_positives: int = MIN_GROUP_POSITIVES,
                           min_expected: float = MIN_EXPECTED_OVERLAP) -> list[list[str]]:
    """Groups of tags that never share a fully tagged asset although chance says they should.

    Only assets the artists tagged in full count (``None`` = untagged and ``partial`` = only review
    answers are left out: a missing tag there is not evidence). Pairs are grouped greedily into cliques
    (every two members of a group are exclusive), most expected overlap first; a tag may be in several.
    """
    part = list(partial) if partial is not None else [False] * len(tag_sets)
    full = [s for s, f in zip(tag_sets, part, strict=True) if s is not None and not f]
    if not full:
        return []
    counts: dict[str, int] = {}
    for s in full:
        for t in s:
            counts[t] = counts.get(t, 0) + 1
    common = sorted((t for t, c in counts.items() if c >= min_positives), key=lambda t: (-counts[t], t))
    co: dict[tuple[str, str], int] = {}
    for s in full:
        present = sorted(t for t in s if t in counts and counts[t] >= min_positives)
        for a, b in combinations(present, 2):
            co[(a, b)] = co.get((a, b), 0) + 1
    n = len(full)
    excl: dict[frozenset[str], float] = {}
    for a, b in combinations(sorted(common), 2):
        expected = counts[a] * counts[b] / n
        if not co.get((a, b)) and expected >= min_expected:
            excl[frozenset((a, b))] = expected
    groups: list[list[str]] = []
    covered: set[frozenset[str]] = set()
    for pair in sorted(excl, key=lambda e: (-excl[e], sorted(e))):
        if pair in covered:
            continue
        group = sorted(pair)
        for t in common:
            if t not in group and all(frozenset((t, g)) in excl for g in group):
                group.append(t)
        covered |= {frozenset(e) for e in combinations(group, 2)}
        groups.append(sorted(group))
    return groups


def merge_groups(*sources: Iterable[Iterable[str]]) -> list[list[str]]:
    """Groups from several sources, each sorted, without duplicates or groups of fewer than two tags."""
    seen: set[tuple[str, ...]] = set()
    out: list[list[str]] = []
    for src in sources:
        for g in src:
            key = tuple(sorted({str(t).strip() for t in g if str(t).strip()}))
            if len(key) >= 2 and key not in seen:
                seen.add(key)
                out.append(list(key))
    return out


@dataclass
class TagDecision:
    """What to do with one asset's predicted tags: ``write`` (claims), ``suggest`` (for the artist to accept),
    and ``reasons`` (why, per predicted tag the asset does not have: for reports and the panel)."""

    write: dict[str, float] = field(default_factory=dict)
    suggest: dict[str, float] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)


def decide(predicted: Mapping[str, float], existing: Iterable[str], thresholds: Mapping[str, float | None],
           groups: Sequence[Sequence[str]] = (), suggest_threshold: float = SUGGEST_THRESHOLD) -> TagDecision:
    """Split ``predicted`` ({tag: p}) for an asset with tags ``existing`` into written and suggested tags.

    Written: ``p >=`` the tag's write threshold (a tag without one is never written), the highest ``p``
    among the predicted members of each of its exclusive ``groups`` (ties: first by name), and no member of
    those groups is in ``existing``. Suggested: not written, not existing, not excluded by an existing
    tag, ``p >= suggest_threshold``. Both ordered most probable first.
    """
    have = set(existing)
    member_of: dict[str, list[Sequence[str]]] = {}
    for g in groups:
        for t in g:
            member_of.setdefault(t, []).append(g)
    out = TagDecision()
    for tag, p in sorted(predicted.items(), key=lambda kv: (-kv[1], kv[0])):
        if tag in have:
            continue
        rivals = {r for g in member_of.get(tag, ()) for r in g if r != tag}
        held = sorted(rivals & have)
        better = sorted(r for r in rivals if r in predicted and (predicted[r] > p or (predicted[r] == p and r < tag)))
        th = thresholds.get(tag)
        if held:
            out.reasons[tag] = f"exclusive with the asset's tag {held[0]!r}"
            continue
        if th is not None and p >= th and not better:
            out.write[tag] = float(p)
            out.reasons[tag] = f"written: {p:.2f} >= its threshold {th:.2f}"
        elif p >= suggest_threshold:
            out.suggest[tag] = float(p)
            out.reasons[tag] = (f"suggested: exclusive with the more probable {better[0]!r}" if th is not None
                                and p >= th else
                                f"suggested: {p:.2f} < its threshold {th:.2f}" if th is not None else
                                "suggested: this tag never reaches the target precision (suggest only)")
        else:
            out.reasons[tag] = f"below {suggest_threshold:.2f}"
    return out
