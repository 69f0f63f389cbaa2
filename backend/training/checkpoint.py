"""Checkpoints: one ``checkpoint.pt`` per run, written atomically (temp file + ``os.replace``).

A checkpoint holds everything to continue training exactly where it stopped: model and code
weights, optimiser state, step, elapsed training time, RNG states, the configuration and preset,
the asset names, a model id (uuid, stable across resumes) and a format version.

A checkpoint holds only data: tensors and plain Python values (dict, list, str, int, float, bool, None),
read back with ``torch.load(weights_only=True)``, so a checkpoint planted in a run or home folder (they live on
shared drives) cannot run code when it is loaded. :func:`save_checkpoint` turns numpy values and tuples into
plain ones so every checkpoint it writes reads back that way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.model.errors import ModelError
from shared.atomic import atomic_file

FORMAT_VERSION = 1
CHECKPOINT = "checkpoint.pt"
REQUIRED = ("format_version", "model_id", "preset", "config", "names", "field", "codes", "step")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a kill at any moment leaves the old or the new file, never half."""
    with atomic_file(path) as f:
        torch.save(plain({"format_version": FORMAT_VERSION, **state}), f)


def plain(value: Any) -> Any:
    """``value`` with numpy scalars/arrays, tuples and paths turned into tensors and plain Python values."""
    if isinstance(value, torch.Tensor | str | bool | int | float) or value is None:
        return value
    if isinstance(value, dict):
        return {(k if isinstance(k, str | int) else str(k)): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value  # torch.save refuses nothing; weights_only loading names what it cannot read


def load_checkpoint(path: Path, expected_preset: str | None = None, map_location: Any = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint; raises :class:`ModelError` for a missing, foreign or mismatched file."""
    if not path.is_file():
        raise ModelError(f"{path.parent}: no {CHECKPOINT} here; train a run first with `asset2vec train`")
    try:
        # Data only: an object the file asks to build (a class, a function call) is refused, never run.
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        why = str(e).strip().splitlines()
        why = next((line for line in why if "Unsupported" in line or "GLOBAL" in line), why[0] if why else "")
        raise ModelError(
            f"{path}: not a readable Asset2Vec checkpoint ({type(e).__name__}: {why[:200]}); a checkpoint holds only "
            f"tensors and plain values, and anything else in it is refused rather than run"
        ) from None
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
