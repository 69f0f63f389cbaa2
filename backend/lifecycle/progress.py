"""Progress of ``asset2vec index``: its stages, one event per update with an ETA per stage and one overall fraction,
and the pipeline's errors (a stop on request raises :class:`PipelineCancelled` from the next update)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from backend.errors import Asset2VecError, Cancelled

STAGES = ("capture", "train", "embed", "features", "tags", "neighbours", "activate")
#: Share of the whole run each stage takes (for one overall progress fraction).
_WEIGHTS = {"capture": 0.22, "train": 0.5, "embed": 0.08, "features": 0.1, "tags": 0.03, "neighbours": 0.02,
            "activate": 0.05}
ProgressFn = Callable[[dict[str, Any]], None]


class PipelineError(Asset2VecError):
    """The pipeline cannot go on; the message says what to do."""


class PipelineCancelled(PipelineError, Cancelled):
    """Stopped on request; everything done so far is kept and a new run continues from there."""


class StageProgress:
    """Stage-aware progress events with an ETA per stage and one overall fraction."""

    def __init__(self, stages: list[str], emit: ProgressFn | None, cancel: threading.Event | None) -> None:
        self.stages, self.emit, self.cancel = stages, emit, cancel
        total = sum(_WEIGHTS[s] for s in stages)
        self.weights = {s: _WEIGHTS[s] / total for s in stages}
        self.stage, self.t0, self.base = "", time.monotonic(), 0.0

    def start(self, stage: str, message: str = "") -> None:
        if self.stage:
            self.base += self.weights[self.stage]
        self.stage, self.t0 = stage, time.monotonic()
        self.update(0, 0, message or f"{stage} ...")

    def update(self, done: float, total: float, message: str = "", eta_s: float | None = None,
               plan: dict[str, Any] | None = None) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise PipelineCancelled(f"index stopped during {self.stage}; run it again to continue")
        frac = min(done / total, 1.0) if total else 0.0
        if eta_s is None and done and total:
            eta_s = (time.monotonic() - self.t0) / done * (total - done)
        if self.emit is not None:
            self.emit({
                "stage": self.stage,
                "stage_index": self.stages.index(self.stage) + 1,
                "stages": len(self.stages),
                "done": done,
                "total": total,
                "fraction": round(self.base + self.weights[self.stage] * frac, 4),
                "eta_s": None if eta_s is None else round(eta_s, 1),
                "message": message,
                **({"plan": plan} if plan is not None else {}),
            })
