"""The appearance feature computed away from the home: the body of an ``index --ray`` feature task.

The task gets bundles as upload archives (bytes) and returns each one's per-view activations; the head writes them
into the bundles' feature caches (:mod:`backend.lifecycle.ray_features`). Nothing here touches a home.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from shared.bundle import read_bundle

from .multiview import DEFAULT_SPEC, compute_view_features, views_digest


def features_task(request: dict[str, Any]) -> dict[str, Any]:
    """``{"archives": [bytes]}`` -> ``{"status", "features": [{"name", "digest", "layers": {layer: float16 [V, C]}}],
    "failed": [str]}``. One torch thread: Ray gives the task one CPU. A bundle that fails is reported, the others
    go on."""
    import torch

    torch.set_num_threads(1)
    out: list[dict[str, Any]] = []
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="asset2vec-features-") as tmp:
        for i, data in enumerate(request["archives"]):
            name = "?"
            try:
                path = Path(tmp) / f"{i}.zip"
                path.write_bytes(data)
                bundle = read_bundle(path)  # validated; views read from the archive
                name = bundle.asset.name
                per_view = compute_view_features(bundle, DEFAULT_SPEC)
                out.append({"name": name, "digest": views_digest(bundle),
                            "layers": {k: v.astype(np.float16) for k, v in per_view.items()}})
            except Exception as e:  # noqa: BLE001 - one bundle's failure is reported, the others go on
                failed.append(f"{name}: {type(e).__name__}: {e}")
    return {"status": "done", "features": out, "failed": failed}
