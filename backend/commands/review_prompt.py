"""The terminal side of ``asset2vec tags review``: how a question is put and how an answer is read."""

from __future__ import annotations

import sys
from typing import Any

#: Answers ``asset2vec tags review`` understands (first letter is enough).
REVIEW_KEYS = {"y": "y", "yes": "y", "n": "n", "no": "n", "s": "s", "skip": "s", "q": "q", "quit": "q"}


def review_question(item: dict[str, Any], i: int, n: int) -> str:
    """``[i/n] does NAME (FILE, OBJECT) have the tag 'TAG'? predicted P%``."""
    where = ", ".join(x for x in (item.get("source_file"), item.get("asset_name")) if x)
    return (f"[{i}/{n}] does {item['name']}{f' ({where})' if where else ''} have the tag {item['tag']!r}? "
            f"predicted {item['probability']:.0%}"
            + ("" if item.get("learnt", True) else " (a new tag: this asset is like the ones that have it)"))


def ask_review_answer(out: Any) -> str:
    """One answer from stdin (a terminal or a pipe): ``y``, ``n``, ``s`` or ``q`` (end of input is ``q``)."""
    while True:
        print("  [y]es / [n]o / [s]kip / [q]uit: ", end="", file=out, flush=True)
        line = sys.stdin.readline()
        if not sys.stdin.isatty():  # piped answers: echo them, so the transcript reads like a terminal session
            print(line.strip(), file=out, flush=True)
        if not line:
            return "q"
        key = REVIEW_KEYS.get(line.strip().lower())
        if key:
            return key
        print(f"  {line.strip()!r}: answer y, n, s or q", file=out, flush=True)
