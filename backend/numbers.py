"""Small number helpers shared by the domain and the service (no torch, no numpy: cheap to import)."""

from __future__ import annotations

import math
from typing import Any


def finite_or_none(x: Any, digits: int = 4) -> float | None:
    """``x`` as a float rounded to ``digits``, or None when it is missing, not a number or not finite.

    Summaries and answers are JSON, which has no NaN or infinity: a metric that failed to compute
    (a NaN PSNR, a missing held-out score) becomes null rather than an invalid document.
    """
    try:
        v = float(x)
    except (TypeError, ValueError, OverflowError):
        return None
    return round(v, digits) if math.isfinite(v) else None
