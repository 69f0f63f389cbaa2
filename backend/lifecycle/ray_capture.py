"""The capture stage of ``asset2vec index --ray``: one Ray task per .blend file, bundles written by the head only.

Each task (:func:`backend.bulk.workers._ray_task`, op ``capture``) opens its file in the Ray worker's own
bpy, captures the file's marked assets into a temporary folder of the worker and returns the bundles
as upload archives (``transforms.json`` + 18 PNGs, a few hundred kB per asset). The head validates each
archive and writes it into ``HOME/bundles`` atomically, so the home never needs to be reachable from the
workers; they need only the library folder at the same path (a shared drive) and the asset2vec package
with the bpy wheel in their Python.

Resuming: the head sends each task the content hashes of the complete bundles it already holds for
that file, so a killed head's next run renders only what is missing or changed (the worker still opens
the file to hash its assets, as the plain capture does). A worker that dies (Blender crashed, a node
lost) is retried by Ray (``max_retries``); a file whose every attempt died is recorded in the home's
state and skipped on later runs, as the single-worker capture does.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backend.errors import Asset2VecError
from shared.bundle import TRANSFORMS, BundleError, parse_archive, read_bundle
from shared.library_files import scan
from shared.naming import catalogue_name, name_collision

from .home import LibraryHome, store_bundle_files

#: ``IndexOptions.ray_address`` for a Ray instance started on this machine (``--ray`` without an address).
LOCAL_RAY = "local"


class RayCaptureError(Asset2VecError):
    """Ray cannot be used (not installed, cluster unreachable); the message says what to do."""


def library_blends(src: Path) -> list[Path]:
    """The .blend files under ``src``, hidden folders skipped: the same list the headless capture scans."""
    return scan(src)[0]


def known_hashes(home: LibraryHome, size: int) -> dict[str, dict[str, str]]:
    """``{source .blend: {asset name: content hash}}`` of the complete bundles of ``size`` px in the home."""
    known: dict[str, dict[str, str]] = {}
    for transforms in sorted(home.bundles.glob(f"*/{TRANSFORMS}")):
        try:
            asset = read_bundle(transforms.parent, expected_size=size).asset
        except BundleError:
            continue  # incomplete or another size: captured again
        if asset.source_blend and asset.content_hash:
            known.setdefault(asset.source_blend, {})[asset.name] = asset.content_hash
    return known


class NameTaken(BundleError):
    """An asset of another file of the library has this catalogue name already (this run)."""


def store_archive(data: bytes, bundles_dir: Path, size: int, owners: dict[str, str] | None = None) -> str:
    """Validate one returned bundle archive and write it into ``bundles_dir/<safe name>/``, replacing an older
    copy atomically (as the service stores an upload). Returns the asset's name; raises :class:`BundleError`.

    ``owners`` (catalogue name -> source .blend, filled here): an asset whose name an asset of another file took
    first in this run is not stored (:class:`NameTaken`): two asset libraries under the folder, laid out alike.
    """
    bundle, images = parse_archive(data, expected_size=size)
    name, source = bundle.asset.name, bundle.asset.source_blend or ""
    if owners is not None:
        first = owners.setdefault(name, source)
        if first != source:
            raise NameTaken(name_collision(name, source, first))
    store_bundle_files(bundles_dir, name, bundle.transforms(), images)
    return name


def _contested(blends: list[Path], src: Path) -> set[str]:
    """The files of ``blends`` whose catalogue-name prefix (path under their library root) another file shares."""
    by_prefix: dict[str, list[str]] = {}
    for b in blends:
        by_prefix.setdefault(catalogue_name(str(b), "", default_root=str(src)), []).append(str(b))
    return {f for files in by_prefix.values() if len(files) > 1 for f in files}


def _check_reachable(address: str) -> None:
    """A clear error in seconds for a ``HOST:PORT`` / ``ray://HOST:PORT`` nobody answers (Ray waits minutes)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or not host:
        return  # "local", "auto": Ray itself answers quickly
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as e:
        raise RayCaptureError(f"no Ray cluster answers at {address} ({e.strerror or e}); start one with `ray start "
                              f"--head` (then --ray auto on its nodes) or give the head's address (--ray HOST:6379)"
                              ) from None


def capture_on_ray(src: Path, home: LibraryHome, address: str, *, size: int, samples: int, device: str,
                   max_attempts: int, on_progress: Callable[[int, int, str], None],
                   cancel: threading.Event | None = None) -> dict[str, Any]:
    """Capture ``src`` with one Ray task per .blend; return what the single-worker capture returns
    (``status``, ``done``, ``skipped``, ``failed``, ``opened``, ``names``, ``present``) for the pruning step.

    ``address``: a Ray cluster's, or :data:`LOCAL_RAY`. Each file gets ``max_attempts`` runs (Ray's retries).
    ``status`` is ``"cancelled"`` when ``cancel`` was set (the bundles stored so far stay).
    """
    from backend.bulk.workers import RayPool, WorkerError

    blends = library_blends(src)
    if not blends:
        return {"status": "failed", "error": f"no .blend files under {src}"}
    state = home.read_state()
    attempts: dict[str, int] = state.get("capture_attempts", {})

    def record(stage: str) -> None:
        home.write_state({**state, "stage": stage, "folder": str(src), "capture_attempts": attempts})

    result: dict[str, Any] = {"status": "done", "done": 0, "skipped": 0, "failed": [], "opened": [], "names": [],
                              "present": []}
    known = known_hashes(home, size)
    requests = []
    for blend in blends:
        if attempts.get(str(blend), 0) >= max_attempts:
            result["failed"].append(f"{blend}: skipped, Blender crashed on it before")
            continue
        requests.append({"op": "capture", "src": str(src), "path": str(blend), "size": size,
                         "samples": samples, "device": device,
                         "known": known.get(str(blend.resolve()), {})})
    record("capture")
    finished = [0]
    # Files whose assets may share names with another file's (two asset libraries under src laid out alike): their
    # results are stored after every task, in scan order, so the same file wins a name as in the plain capture.
    contested = _contested(blends, src)
    deferred: list[tuple[dict[str, Any], dict[str, Any]]] = []
    owners: dict[str, str] = {}  # catalogue name -> the .blend whose asset took it first

    def on_result(request: dict[str, Any], res: dict[str, Any]) -> None:
        if request["path"] in contested and res.get("status") == "done":
            deferred.append((request, res))
        else:
            store(request, res)
        finished[0] += 1
        assets = result["done"] + result["skipped"]
        on_progress(finished[0], len(requests),
                    f"captured {finished[0]}/{len(requests)} files on Ray ({assets} assets)")

    def store(request: dict[str, Any], res: dict[str, Any]) -> None:
        path = request["path"]
        if res.get("crashed"):
            # Ray ran it 1 + max_retries times and every worker died: skipped from now on, like the plain capture.
            attempts[path] = max_attempts
            record("capture")
            result["failed"].append(f"{path}: skipped, Blender crashed on it {max_attempts} times "
                                    f"({res.get('error')})")
        elif res.get("status") != "done":
            result["failed"].append(f"{path}: {res.get('error') or 'the capture failed'}")
        else:
            damaged = 0
            for data in res["archives"]:  # one per rendered asset
                try:
                    store_archive(data, home.bundles, size, owners)
                except NameTaken as e:
                    damaged += 1
                    result["failed"].append(str(e))
                except BundleError as e:
                    damaged += 1
                    result["failed"].append(f"{Path(path).name}: the worker returned a damaged bundle ({e})")
            result["done"] += int(res["done"]) - damaged
            result["skipped"] += int(res["skipped"])
            for key in ("failed", "opened", "names", "present"):
                result[key] += list(res[key])
            if attempts.pop(path, None) is not None:
                record("capture")

    _check_reachable(address)
    try:
        # "local" starts a new Ray here with every CPU, even when a `ray start` cluster runs on this machine.
        pool = RayPool(os.cpu_count() or 1, address, max_retries=max_attempts - 1)
    except WorkerError as e:
        raise RayCaptureError(str(e)) from None
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise RayCaptureError(f"could not reach the Ray cluster at {address!r} ({e}); start one with `ray start "
                              f"--head` (then --ray auto on its nodes) or give the head's address (--ray HOST:6379)"
                              ) from None
    stop = cancel or threading.Event()
    try:
        on_progress(0, len(requests), f"capturing {len(requests)} files on Ray")
        pool.run(requests, lambda ev: None, on_result, stop)
    finally:
        pool.close()
    order = {str(b): i for i, b in enumerate(blends)}
    for request, res in sorted(deferred, key=lambda item: order[item[0]["path"]]):
        store(request, res)
    if stop.is_set():
        return {**result, "status": "cancelled"}
    record("captured")
    return result
