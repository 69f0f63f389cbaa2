"""When would retraining help? New assets get codes by inversion with the decoder frozen; when they
fit clearly worse than the assets the decoder was trained on, the decoder has not seen their kind.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Inversions needed before judging (one odd asset says little).
MIN_INVERTED = 3
#: How far (dB) the median inversion PSNR may fall below the library's before retraining is advised.
MARGIN_DB = 2.0
#: Only the most recent inversions count (the library drifts).
RECENT = 50


def reference_psnr(run: Any) -> float | None:
    """PSNR of the library the decoder was trained on (its training views), else its held-out PSNR."""
    metrics = getattr(run, "metrics", {}) or {}
    for key in ("train_psnr", "heldout_psnr"):
        value = metrics.get(key)
        if value is not None and np.isfinite(float(value)):
            return float(value)
    return None


def retrain_advice(catalogue: Any, run: Any) -> str | None:
    """A sentence for the artist when new assets fit the model clearly worse than its library, else None."""
    ref = reference_psnr(run)
    psnrs = catalogue.inversion_psnrs(run.model_id, RECENT)
    if ref is None or len(psnrs) < MIN_INVERTED:
        return None
    median = float(np.median(psnrs))
    if median >= ref - MARGIN_DB:
        return None
    return (f"New assets fit this model worse than the library it was trained on (median {median:.1f} dB over "
            f"the last {len(psnrs)} vs {ref:.1f} dB): retraining on the whole library would help "
            "(Retrain in the Library Model panel, or `asset2vec index FOLDER --retrain`).")
