"""Checkpoints: one ``checkpoint.pt`` per run, written atomically (temp file + ``os.replace``).

A checkpoint holds everything to continue training exactly where it stopped: model and code
weights, optimiser state, step, elapsed training time, RNG states, the configuration and preset,
the asset names, a model id (uuid, stable across resumes) and a format version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from backend.model.errors import ModelError
from shared.atomic import atomic_file

FORMAT_VERSION = 1
CHECKPOINT = "checkpoint.pt"
REQUIRED = ("format_version", "model_id", "preset", "config", "names", "field", "codes", "step")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a kill at any moment leaves the old or the new file, never half."""
    with atomic_file(path) as f:
        torch.save({"format_version": FORMAT_VERSION, **state}, f)


def load_checkpoint(path: Path, expected_preset: str | None = None, map_location: Any = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint; raises :class:`ModelError` for a missing, foreign or mismatched file."""
    if not path.is_file():
        raise ModelError(f"{path.parent}: no {CHECKPOINT} here; train a run first with `asset2vec train`")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise ModelError(f"{path}: not a readable Asset2Vec checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED):
        raise ModelError(f"{path}: not an Asset2Vec checkpoint (missing fields)")
    if state["format_version"] != FORMAT_VERSION:
        raise ModelError(
            f"{path}: checkpoint format version {state['format_version']} is not supported by this Asset2Vec "
            f"(it reads version {FORMAT_VERSION}); retrain the run or use the Asset2Vec version that wrote it"
        )
    if expected_preset is not None and state["preset"] != expected_preset:
        raise ModelError(
            f"{path}: this run was trained with preset {state['preset']!r}, not {expected_preset!r}; "
            f"resume it with --preset {state['preset']} or train a new run in another --out folder"
        )
    return state
