"""The per-file task of a bulk-tag run: open one .blend, capture, embed and write back its assets, save safely.

Runs in a headless worker process (:mod:`blender_addon.headless.bulk_worker`, or a Ray task): one
call of :func:`process_file` per .blend, reporting through ``emit(event: dict)`` so the driver
(:mod:`backend.commands.bulk`) can journal every step and resume after a kill.

Safety of the artist's file, in order:

1. :func:`~blender_addon.headless.blend_files.check_blend` refuses before Blender reads anything: not a
   .blend / corrupt header, saved by a newer Blender, read-only (no owner write bit: tests run as root,
   where writes would succeed).
2. A file that Blender cannot open is reported; nothing is written.
3. Changes are written to a temporary file in the same folder (``save_as_mainfile(copy=True)``),
   fsynced, the original copied to ``NAME.blend1`` (Blender's backup name), and only then
   ``os.replace``d over the original. A kill at any moment leaves the original or the new file,
   never a mix. A file that changed on disk while we worked is not overwritten.

Only final answers are written (issue 17): when the backend answers from its instant encoder
(``code_source: "encoder"``), the run waits for that answer's refinement job and writes the refined one
(:func:`final_answer`), as the add-on's Embed ends up writing; the journal only hands back final answers of
the same content and model (:func:`_resumed`), so a dry run and the real run after it work from the same answers
and report the same counts. Each asset's report says which tags are (or would be) added and removed and why
(probability vs threshold: ``to_add``, ``to_remove``, ``why``).

Events (all JSON-able dicts with ``"ev"``): ``assets`` (how many assets the file has),
``captured`` / ``embedded`` / ``skipped`` (per asset), and the return value of :func:`process_file`
summarises the file (``status``: ``written``, ``unchanged``, ``dry-run`` or ``failed``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bpy

from ..capture import CaptureError, asset_tags, capture_asset, quiet_stdout
from ..content_hash import hash_parts
from ..errors import AddonError, BlendFileError
from ..parts import evaluated_parts
from ..protocol import api, bundle, client, metadata, naming, tempfolders
from ..writeback import WritebackError, proposed_for, read_metadata, stale_tags, tag_reason, write_result
from .blend_files import check_blend, load_blend, marked_assets

Emit = Callable[[dict[str, Any]], None]
#: Prefix of the temporary files written next to the original during a safe save.
TMP_PREFIX = ".a2v-tmp-"
#: Uploads retried while the backend's queue is full (waits of 1, 2, 4, ... 30 s).
BUSY_RETRIES = 8


class BulkFileError(BlendFileError):
    """This file cannot be tagged; the message says why and what to do. The file was left untouched."""


class AnswerError(AddonError):
    """The backend gave this asset no final answer (its instant one could not be refined); nothing is written."""


def is_final(result: api.EmbedResult) -> bool:
    """Whether ``result`` is a final answer: a fitted code, not an instant-encoder one a refinement would change."""
    return result.code_source != "encoder"


def final_answer(backend: client.Client, result: api.EmbedResult, timeout: float) -> api.EmbedResult:
    """The final answer of an embed: ``result`` itself, or the answer of its refinement job once that is done.

    Raises :class:`AnswerError` when there is none (no refinement queued, dropped, failed or too slow).
    """
    if is_final(result):
        return result
    if not result.refine_job:
        why = result.refine_error or "no refinement was queued"
        raise AnswerError(f"the backend answered from its instant encoder only ({why}): nothing written; run "
                          "bulk-tag again for the final answer")
    try:
        backend.wait(result.refine_job, timeout=timeout)
        refined = backend.embed_result(result.refine_job)
    except client.BackendError as e:
        raise AnswerError(f"the refinement of its instant answer did not come back ({e}): nothing written") from None
    if isinstance(refined, api.RefineDropped):
        raise AnswerError(f"the backend dropped the refinement of its instant answer ({refined.message}): nothing "
                          "written; run bulk-tag again") from None
    if not is_final(refined):
        raise AnswerError("the refined answer is still an instant one: nothing written")
    return refined


def file_stat(path: Path) -> dict[str, Any]:
    """``{"size", "mtime_ns", "sha256"}`` of a file: how the journal recognises a file it wrote."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": h.hexdigest()}


def journal_key(id_: Any) -> str:
    """The journal's name for an asset: ``OB:name`` or ``CO:name`` (objects and collections may share names)."""
    return f"{'CO' if isinstance(id_, bpy.types.Collection) else 'OB'}:{id_.name}"


def catalogue_name(path: Path, root: Path, id_: Any) -> str:
    """The backend's name for an asset: its one identity (:func:`shared.naming.catalogue_name`), as the panel names it.

    ``root`` (the folder being tagged, which holds the run's ``.asset2vec/`` journal) is only the fallback
    when no marked library root is found above the file.
    """
    return naming.catalogue_name(str(path), id_.name, default_root=str(root))


def up_to_date(id_: Any, current_hash: str, model_id: str) -> bool:
    """Whether the file already holds our final result for exactly this content and model (an instant answer
    whose refinement never arrived, e.g. Blender closed meanwhile, is not final: bulk-tag embeds it again)."""
    data = read_metadata(id_)
    return (bool(data) and data.get(metadata.CONTENT_HASH) == current_hash and data.get(metadata.MODEL_ID) == model_id
            and data.get(metadata.CODE_SOURCE) != "encoder")


def process_file(
    path: str | os.PathLike[str],
    options: dict[str, Any],
    known: dict[str, dict[str, Any]] | None = None,
    emit: Emit | None = None,
) -> dict[str, Any]:
    """Tag every asset of one .blend; never raises for a bad file (it is reported and left as it was).

    ``options``: ``root`` (library folder), ``url``, ``token``, ``size``, ``samples``, ``threshold``
    (None: the backend's), ``dry_run``, ``backup``, ``all_objects``, ``thumbs`` (folder for report
    thumbnails or None), ``model_id`` (the backend's, for up-to-date checks), ``timeout``.
    ``known``: ``{journal_key: {"hash", "result"}}`` results embedded by an earlier, interrupted run.
    Returns ``{"status", "error", "assets": [per-asset report], "stat": file_stat or None}``.
    """
    emit = emit or (lambda ev: None)
    p = Path(path)
    out: dict[str, Any] = {"path": str(p), "status": "failed", "error": "", "assets": [], "stat": None}
    try:
        _process(p, options, known or {}, emit, out)
    except BlendFileError as e:
        out["status"], out["error"] = "failed", str(e)
    except (client.BackendError, OSError) as e:
        out["status"], out["error"] = "failed", f"{e}"
    finally:
        with quiet_stdout(True, fds=(1, 2)):
            bpy.ops.wm.read_factory_settings(use_empty=True)  # free the file before the next one
    return out


def _process(p: Path, opts: dict[str, Any], known: dict[str, dict[str, Any]], emit: Emit, out: dict[str, Any]) -> None:
    dry_run = bool(opts.get("dry_run"))
    check_blend(p, writable=True)  # refused in dry runs too: the report must not propose changes that cannot be made
    before = p.stat()
    _remove_stale_temps(p)
    load_blend(p)
    targets = marked_assets(all_objects=bool(opts.get("all_objects")))
    emit({"ev": "assets", "path": str(p), "total": len(targets)})
    backend = client.Client(opts["url"], opts.get("token"), timeout=float(opts.get("timeout", 60.0)))
    model_id = str(opts.get("model_id") or "")
    threshold = opts.get("threshold")
    changed = False
    root = Path(opts.get("root") or p.parent)
    for target in targets:
        key = journal_key(target)
        report: dict[str, Any] = {"asset": key, "name": target.name, "artist_tags": asset_tags(target)}
        try:
            with evaluated_parts(target) as parts:
                current = hash_parts(parts) if parts else ""
            report["hash"] = current
            if current and up_to_date(target, current, model_id):
                report["status"] = "up-to-date"
                emit({"ev": "skipped", "path": str(p), "asset": key, "hash": current})
                out["assets"].append(report)
                continue
            prior = known.get(key) or {}
            resumed = _resumed(prior, current, model_id)
            if resumed is not None:
                result = resumed
                report["thumb"] = prior.get("thumb")
            else:
                result, report["thumb"] = _capture_and_embed(target, p, root, opts, backend, emit)
            emit({"ev": "embedded", "path": str(p), "asset": key, "hash": current, "result": result.to_json(),
                  "thumb": report.get("thumb")})
        except (CaptureError, AnswerError) as e:
            report.update(status="failed", error=str(e))
            emit({"ev": "asset-failed", "path": str(p), "asset": key, "error": str(e)})
            out["assets"].append(report)
            continue
        predicted = {str(t): float(v) for t, v in result.predicted_tags.items()}
        report["predicted"] = predicted
        report["neighbours"] = {space: [n.to_json() for n in found] for space, found in result.neighbours.items()}
        report["threshold"] = float(threshold if threshold is not None else result.threshold)
        report["code_source"] = result.code_source
        report["to_add"] = {t: predicted[t] for t in proposed_for(target, result, threshold)}
        report["to_remove"] = {t: predicted[t] for t in stale_tags(target, result, threshold)}
        report["why"] = _reasons(result, report["to_add"], report["to_remove"], threshold)
        if dry_run:
            report["status"] = "proposed"
        else:
            try:
                wr = write_result(target, result, auto_accept=True, threshold=threshold)
            except WritebackError as e:
                report.update(status="failed", error=str(e))
                out["assets"].append(report)
                continue
            report["status"], report["added"], report["removed"] = "written", wr.added, wr.removed
            changed = True
        out["assets"].append(report)
    if dry_run:
        out["status"] = "dry-run"
    elif changed:
        safe_save(p, before, backup=bool(opts.get("backup", True)))
        out["status"] = "written"
    else:
        out["status"] = "unchanged"
    if not dry_run:
        out["stat"] = file_stat(p)
    failed = [a for a in out["assets"] if a.get("status") == "failed"]
    if failed and len(failed) == len(out["assets"]):
        out["status"], out["error"] = "failed", f"{failed[0]['name']}: {failed[0]['error']}"


def _reasons(result: api.EmbedResult, to_add: dict[str, float], to_remove: dict[str, float],
             threshold: float | None) -> dict[str, str]:
    """Why each tag is (or would be) added or removed: its probability against its own write threshold."""
    why = {t: tag_reason(result, t, True, threshold) for t in to_add}
    why.update({t: tag_reason(result, t, False, threshold) for t in to_remove})
    return why


def _resumed(prior: dict[str, Any], current: str, model_id: str) -> api.EmbedResult | None:
    """The final answer an earlier run (a dry run too) got for exactly this content and model (journal JSON).

    An instant-encoder answer is never reused: a refinement would change it, and the run waits for that instead.
    """
    data = prior.get("result")
    if not data or not current or prior.get("hash") != current or (model_id and data.get("model_id") != model_id):
        return None
    try:
        result = api.EmbedResult.from_json(data)
    except api.ApiError:
        return None  # journalled by an older version: embed again
    return result if is_final(result) else None


def _capture_and_embed(target: Any, p: Path, root: Path, opts: dict[str, Any], backend: client.Client,
                       emit: Emit) -> tuple[api.EmbedResult, str | None]:
    """Capture ``target`` into a private temporary folder, upload it, return (embed result, thumbnail path)."""
    with tempfolders.folder("asset2vec-bulk-") as tmp:  # a killed run's folder: removed at the next start
        folder = Path(tmp) / "bundle"
        captured = capture_asset(target, folder, size=int(opts.get("size", 64)), samples=int(opts.get("samples", 8)),
                                 name=catalogue_name(p, root, target), source_blend=str(p.resolve()),
                                 device=str(opts.get("device", "AUTO")))
        emit({"ev": "captured", "path": str(p), "asset": journal_key(target), "hash": captured.asset.content_hash})
        thumb = None
        if opts.get("thumbs"):
            thumbs = Path(opts["thumbs"])
            thumbs.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha1(f"{p.resolve()}|{journal_key(target)}".encode()).hexdigest()[:16]
            thumb = str(thumbs / f"{digest}.png")
            shutil.copyfile(folder / bundle.VIEWS_DIR / f"{api.THUMBNAIL_VIEW:02d}.png", thumb)
        archive = bundle.write_archive(captured, Path(tmp) / "bundle.zip")
        data = archive.read_bytes()
    # The backend's job queue is bounded: with many workers an upload may find it full ("busy"); wait and retry.
    timeout = float(opts.get("job_timeout", 600.0))
    for attempt in range(BUSY_RETRIES + 1):
        try:
            return final_answer(backend, backend.embed(data, timeout=timeout), timeout), thumb
        except client.BackendBusy:
            if attempt == BUSY_RETRIES:
                raise
            time.sleep(min(30.0, 2.0 ** attempt))
    raise AssertionError("unreachable")


def _remove_stale_temps(p: Path) -> None:
    """Temporary files a killed run left next to ``p`` (never the original or its backup)."""
    p = p.resolve()  # safe_save writes them next to the file a symlink points to
    for stale in p.parent.glob(f"{TMP_PREFIX}{p.name}*"):
        with contextlib.suppress(OSError):
            stale.unlink()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform/file system can fsync a directory
        _fsync(folder)


def _atomic_copy(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest`` through a temporary file, so ``dest`` is never half written."""
    tmp = dest.with_name(f"{TMP_PREFIX}{dest.name}")
    shutil.copy2(src, tmp)
    _fsync(tmp)
    os.replace(tmp, dest)


def safe_save(p: Path, before: os.stat_result, backup: bool = True) -> None:
    """Save the open session over ``p`` atomically, keeping ``p.blend1`` as a backup of the original.

    ``before`` is ``p``'s stat when it was opened: if the file changed since (an artist saved it),
    nothing is written and :class:`BulkFileError` says to run again. A symlinked file is saved
    through its link (the link stays a link to the updated file).
    """
    p = Path(p).resolve()
    now = p.stat()
    if (now.st_size, now.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        raise BulkFileError("it changed on disk while it was being tagged (saved by someone else?): not overwritten; "
                            "run bulk-tag again to tag the new version")
    with p.open("rb") as f:
        compressed = f.read(4) == b"\x28\xb5\x2f\xfd"  # keep zstd-compressed files compressed
    tmp = p.with_name(f"{TMP_PREFIX}{p.name}")
    try:
        with quiet_stdout(True, fds=(1, 2)):
            bpy.ops.wm.save_as_mainfile(filepath=str(tmp), copy=True, check_existing=False, compress=compressed,
                                        relative_remap=False)
    except RuntimeError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise BulkFileError(f"saving failed ({str(e).strip().splitlines()[-1] if str(e).strip() else e}); the file "
                            f"was not changed") from None
    try:
        os.chmod(tmp, stat.S_IMODE(now.st_mode))
        _fsync(tmp)
        if backup:
            _atomic_copy(p, p.with_name(p.name + "1"))
        os.replace(tmp, p)
        _fsync_dir(p.parent)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise BulkFileError(f"saving failed ({e.strerror or e}); the file was not changed") from None


def import_loose_models(root: str | os.PathLike[str], models: list[str]) -> dict[str, Any]:
    """Import loose OBJ/glTF ``models`` (under ``root``) into new .blend libraries in ``root``.

    Uses :func:`blender_addon.headless.import_folder.import_folder` on a private copy (each model's
    folder, so .mtl files and textures come along, and ``root/catalog.json`` when present), then
    moves the new files in as ``asset2vec_import_<Category>.blend``, never overwriting an existing
    file (a number is added instead). Returns ``{"blends": [paths], "failed": [{source, error}]}``.
    """
    from .import_folder import FolderImportError, import_folder

    base = Path(root).resolve()
    with tempfolders.folder("asset2vec-bulk-import-") as tmp:
        src, dest = Path(tmp) / "src", Path(tmp) / "out"
        copied: set[Path] = set()
        for m in models:
            rel = Path(m).resolve().relative_to(base)
            folder = (src / rel).parent
            if folder in copied:
                continue
            folder.mkdir(parents=True, exist_ok=True)
            for f in Path(m).resolve().parent.iterdir():
                if f.is_file():
                    shutil.copy2(f, folder / f.name)
            copied.add(folder)
        wanted = {(src / Path(m).resolve().relative_to(base)) for m in models}
        for f in list(src.rglob("*")):  # sibling models that are not asked for (already imported) stay out
            if f.is_file() and f.suffix.lower() in (".obj", ".gltf", ".glb") and f not in wanted:
                f.unlink()
        catalogue = base / "catalog.json"
        try:
            report = import_folder(src, dest, catalogue if catalogue.is_file() else None)
        except FolderImportError as e:
            return {"blends": [], "failed": [{"source": str(m), "error": str(e)} for m in models]}
        blends = []
        for name in report["blends"]:
            target = base / f"asset2vec_import_{name}"
            k = 2
            while target.exists():
                target = base / f"asset2vec_import_{Path(name).stem}_{k}.blend"
                k += 1
            tmp_target = target.with_name(f"{TMP_PREFIX}{target.name}")
            shutil.copy2(dest / name, tmp_target)
            _fsync(tmp_target)
            if target.exists():  # appeared meanwhile: never overwrite
                tmp_target.unlink()
                continue
            os.replace(tmp_target, target)
            blends.append(str(target))
        failed = [{"source": str(base / Path(f["source"]).relative_to(src)) if Path(f["source"]).is_relative_to(src)
                   else f["source"], "error": f["error"]} for f in report["failed"]]
    return {"blends": blends, "failed": failed}
