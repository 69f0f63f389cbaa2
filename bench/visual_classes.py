"""Visual classes from model names: what an artist means by "similar" (a kitchen chair and a living-room chair).

Catalogue categories of furniture libraries are mostly rooms, so the quality benchmark also scores a *visual
class* derived from each model's name by the keyword rules below. The rules were fixed before any feature was
measured with them and must not be tuned to results: the first rule with a keyword among the name's words wins
(order matters: "Desk lamp" is a lamp, "Bedside table" a table, "Glass door cabinet" storage, "Seat Leon" a
vehicle). Only classes with at least :data:`MIN_MEMBERS` members in a library are scored.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

MIN_MEMBERS = 10

# (class, keywords); a keyword of several words must appear as consecutive words; plural "s" is ignored
RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("plug/switch", ("plug", "switch", "socket", "dimmer")),
    ("window", ("window",)),
    ("vehicle", ("car", "bus", "truck", "van", "suv", "bicycle", "tricycle", "scooter", "motorbike", "chevrolet",
                 "peugeot", "renault", "seat leon", "yamaha")),
    ("lamp", ("lamp", "light", "chandelier", "uplight", "spotlight")),
    ("storage", ("wardrobe", "bookcase", "shelve", "shelf", "cabinet", "cupboard", "dresser", "chest", "drawer",
                 "sideboard")),
    ("door", ("door",)),
    ("table/desk", ("table", "desk")),
    ("chair/stool", ("chair", "armchair", "stool", "puff", "bench", "bank")),
    ("sofa", ("sofa", "couch", "futon")),
    ("bed", ("bed", "crib", "mattress")),
    ("plant", ("plant", "tree", "bush", "hedge", "flower", "ficus", "bamboo", "bonsai", "pine", "palm", "cypress",
               "maple", "poplar", "acacia", "beech", "blossom")),
    ("person", ("mannequin", "person")),
    ("tableware", ("cup", "plate", "bowl", "bottle", "teapot", "creamer", "tray", "vase", "jar", "glasses")),
)


def _words(name: str) -> list[str]:
    words = re.findall(r"[a-z]+", name.lower())
    return [w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words]


def _stem(keyword: str) -> list[str]:
    return _words(keyword)


def visual_class(name: str) -> str | None:
    """The visual class of a model called ``name``, or None when no rule matches."""
    words = _words(name)
    for cls, keywords in RULES:
        for kw in keywords:
            k = _stem(kw)
            if any(words[i:i + len(k)] == k for i in range(len(words) - len(k) + 1)):
                return cls
    return None


def visual_classes(names: Sequence[str], min_members: int = MIN_MEMBERS) -> list[str | None]:
    """Each name's visual class, None for no class or a class with fewer than ``min_members`` members here."""
    raw = [visual_class(n) for n in names]
    counts = Counter(c for c in raw if c is not None)
    return [c if c is not None and counts[c] >= min_members else None for c in raw]
