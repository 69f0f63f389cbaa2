"""``asset2vec catalogue | tags | similar | explore | sparse | duplicates | style-grid | weak-spots | query-image``.

Thin wrappers over :mod:`backend.library`. Every command takes ``--run RUN_DIR`` (the trained
decoder whose codes are used), ``--catalogue PATH`` (default ``RUN_DIR/catalogue.sqlite``; the
default one is filled from the run's training codes on first use) and ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from backend.cli import CommandError
from backend.commands.review_prompt import ask_review_answer, review_question
from shared import api

CATALOGUE_NAME = "catalogue.sqlite"
TAG_MODEL_NAME = "tags.joblib"  # = backend.library.tags.TAG_MODEL_FILE (not imported here: sklearn loads lazily)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("catalogue", help="fill or inspect the asset catalogue (SQLite) of a run")
    csub = p.add_subparsers(dest="catalogue_command", required=True, metavar="ACTION")
    q = csub.add_parser("import", help="import a run's assets, training codes and artist tags")
    _common(q)
    q.set_defaults(func=cmd_catalogue_import)
    q = csub.add_parser("info", help="models, asset and tag counts")
    _common(q)
    q.set_defaults(func=cmd_catalogue_info)
    from .catalogue_hygiene import register_remove

    register_remove(csub)

    p = sub.add_parser("tags", help="learn the artists' tags from codes and propose them")
    tsub = p.add_subparsers(dest="tags_command", required=True, metavar="ACTION")
    q = tsub.add_parser("train", help="train per-tag classifiers on the assets artists tagged")
    _common(q)
    _tag_model_arg(q)
    q.add_argument("--no-size", action="store_true", help="use the codes only, not the assets' metric size")
    q.add_argument("--min-examples", type=int, default=3, help="assets needed with and without a tag (default 3)")
    q.add_argument("--target-precision", type=float, default=None,
                   help="out-of-fold precision a tag must reach to be written into files; tags that never do are "
                        "suggestions only (default: the existing tag model's, else 0.9)")
    q.add_argument("--exclusive", type=Path, default=None,
                   help='declared exclusive tag groups: JSON {"exclusive": [["3-legs", "4-legs"]]} or a CSV of one '
                        "group per row (kept by later trainings; groups are also learnt from the library)")
    q.set_defaults(func=cmd_tags_train)
    q = tsub.add_parser("predict", help="predict tags for every asset and store them as predicted tags")
    _common(q)
    _tag_model_arg(q)
    q.add_argument("--threshold", type=float, default=0.5, help="propose tags at or above this probability")
    q.add_argument("assets", nargs="*", help="only these assets (default: all)")
    q.set_defaults(func=cmd_tags_predict)
    q = tsub.add_parser("report", help="cross-validated precision/recall, write thresholds and exclusive groups "
                                       "of the trained tag model")
    _common(q)
    _tag_model_arg(q)
    q.set_defaults(func=cmd_tags_report)
    q = tsub.add_parser("review", help="answer the tag predictions the classifiers are least sure of (y/n/s/q); "
                                       "each answer is stored as an artist tag and retrains the classifiers")
    _common(q)
    _tag_model_arg(q)
    q.add_argument("-n", type=int, default=10, help="ask at most this many questions (default 10)")
    q.set_defaults(func=cmd_tags_review)
    q = tsub.add_parser("import", help="add artist tags from a tag list (CSV name,tag rows or JSON {name: [tags]})")
    q.add_argument("file", type=Path, help="CSV (name,tag or name,tag1;tag2; header optional) or JSON {name: [tags]}")
    q.add_argument("--run", type=Path, default=None, help="run folder whose catalogue receives the tags")
    q.add_argument("--catalogue", type=Path, default=None, help=f"catalogue file (default RUN_DIR/{CATALOGUE_NAME})")
    q.add_argument("--skip-unknown", action="store_true",
                   help="import the names the catalogue knows and report the others (default: import nothing)")
    q.add_argument("--json", action="store_true", help="print the result as JSON")
    q.set_defaults(func=cmd_tags_import)

    p = sub.add_parser("similar", help="nearest assets in shape, texture or both")
    _common(p)
    p.add_argument("asset", nargs="?", help="asset name (omit with --all)")
    p.add_argument("--space", choices=api.SPACES, default="both")
    p.add_argument("-k", type=int, default=10, help="how many neighbours (default 10)")
    p.add_argument("--exclude-family", action="store_true", help="leave out the asset's own parametric family")
    p.add_argument("--size-weight", type=float, default=0.0, help="weight of the metric-size feature (default 0)")
    p.add_argument("--all", action="store_true", help="compute and store suggestions for every asset")
    p.set_defaults(func=cmd_similar)

    p = sub.add_parser("explore", help="write the exploration page: PCA strips, maps, clusters, sparse regions, ...")
    _common(p)
    p.add_argument("--out", type=Path, required=True, help="folder for the PNGs, JSON and index.html")
    p.add_argument("--method", choices=("pca", "tsne"), default="pca", help="2D map projection (default pca)")
    p.add_argument("--image-size", type=int, default=48, help="pixels per decoder render (default 48)")
    p.add_argument("--max-shown", type=int, default=2000,
                   help="above this many assets the maps show a deterministic stratified sample of this many "
                        "(every asset's coordinates go to map_points.csv; default 2000)")
    p.set_defaults(func=cmd_explore)

    p = sub.add_parser("sparse", help="regions of code space where the library is thin")
    _common(p)
    p.add_argument("-n", type=int, default=5, help="how many regions (default 5)")
    p.add_argument("--space", choices=api.SPACES, default="both")
    p.add_argument("--render", type=Path, default=None, help="PNG of decoder renders of the regions' centres")
    p.set_defaults(func=cmd_sparse)

    p = sub.add_parser("duplicates", help="assets whose codes nearly coincide in both shape and texture")
    _common(p)
    p.add_argument("--ratio", type=float, default=0.2,
                   help="distance threshold as a fraction of the median nearest-neighbour distance (default 0.2)")
    p.set_defaults(func=cmd_duplicates)

    p = sub.add_parser("style-grid", help="shape of asset i x texture of asset j, rendered by the decoder")
    _common(p)
    p.add_argument("assets", nargs="+", help="assets giving the shapes (rows) and, by default, the textures")
    p.add_argument("--textures", nargs="+", default=None, help="other assets for the texture columns")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--image-size", type=int, default=64)
    p.set_defaults(func=cmd_style_grid)

    p = sub.add_parser("weak-spots", help="where in code space per-asset scores (e.g. a model's error) are bad")
    _common(p)
    p.add_argument("scores", type=Path, help="CSV of asset,score (header optional)")
    p.add_argument("-k", type=int, default=8, help="neighbours to smooth over (default 8)")
    p.add_argument("--lower-is-worse", action="store_true", help="low scores are bad (e.g. accuracy)")
    p.add_argument("--out", type=Path, default=None, help="PNG map coloured by the smoothed score")
    p.set_defaults(func=cmd_weak_spots)

    p = sub.add_parser("query-image", help="nearest assets to a single image (fits a code to that one view)")
    _common(p)
    p.add_argument("image", type=Path, help="PNG/JPEG: RGBA, or RGB on a plain background")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--steps", type=int, default=None, help="fitting steps (default: the preset's inversion steps)")
    p.add_argument("--space", choices=api.SPACES, default="both", help="space to search in")
    p.add_argument("--method", choices=("auto", "feature", "decoder"), default="auto",
                   help="feature: the pretrained appearance feature (needs `asset2vec index`); decoder: fit a code; "
                        "auto (default): the feature when every asset has one and the space is both")
    p.set_defaults(func=cmd_query_image)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", type=Path, required=True, help="trained run folder (its model id keys the codes), or a library home from `asset2vec index` (its active model)")
    p.add_argument("--catalogue", type=Path, default=None, help=f"catalogue file (default RUN_DIR/{CATALOGUE_NAME})")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _tag_model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tag-model", type=Path, default=None, help=f"tag model file (default RUN_DIR/{TAG_MODEL_NAME})")


# -- plumbing -----------------------------------------------------------------------------------

@contextmanager
def _errors():
    """Domain errors become :class:`CommandError` (one line, no traceback)."""
    from backend.library.errors import LibraryError
    from backend.model.errors import ModelError

    try:
        yield
    except (LibraryError, ModelError) as e:
        raise CommandError(str(e)) from None


def _load_run(args: argparse.Namespace) -> Any:
    from backend.lifecycle.home import HomeError, resolve_run
    from backend.training.run import load_run

    try:
        # A library home (from `asset2vec index`) stands for its active model and its catalogue.
        run_dir, home_catalogue = resolve_run(args.run)
    except HomeError as e:
        raise CommandError(str(e)) from None
    if home_catalogue is not None:
        args.run = run_dir
        if getattr(args, "catalogue", None) is None:
            args.catalogue = home_catalogue
    if not args.run.is_dir():
        raise CommandError(f"{args.run}: no such run folder (train one with: asset2vec train BUNDLES --out RUN_DIR)")
    with _errors():
        return load_run(args.run)


def _open(args: argparse.Namespace, need_codes: bool = True) -> tuple[Any, Any, Any]:
    """``(run, catalogue, code table)``. The default catalogue is created from the run when it has no codes yet."""
    from backend.library.catalogue import Catalogue, import_run

    run = _load_run(args)
    default = args.catalogue is None
    path = args.catalogue or args.run / CATALOGUE_NAME
    with _errors():
        if not default and not path.exists():
            raise CommandError(f"{path}: no catalogue here (create it with: asset2vec catalogue import --run "
                               f"{args.run} --catalogue {path})")
        cat = Catalogue(path, expect_model=run.model_id)
        table = None
        if not any(m["model_id"] == run.model_id and m["codes"] for m in cat.models()):
            if default:
                _say(args, f"catalogue {path}: importing the run's {len(run.names)} training codes")
                table = import_run(cat, run)
        if need_codes and table is None:
            table = cat.codes(run.model_id)
    return run, cat, table


def _say(args: argparse.Namespace, msg: str) -> None:
    print(msg, file=sys.stderr)


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    if args.json:
        print(json.dumps(data, indent=1, default=_jsonable))
    else:
        print(text)


def _jsonable(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


def _tag_model_path(args: argparse.Namespace) -> Path:
    return args.tag_model or args.run / TAG_MODEL_NAME


# -- catalogue ----------------------------------------------------------------------------------

def cmd_catalogue_import(args: argparse.Namespace) -> int:
    from backend.library.catalogue import Catalogue, import_run

    run = _load_run(args)
    path = args.catalogue or args.run / CATALOGUE_NAME
    with _errors(), Catalogue(path, expect_model=run.model_id) as cat:
        table = import_run(cat, run)
        data = {"catalogue": str(path), "model_id": run.model_id, "assets": len(table)}
    _emit(args, data, f"imported {len(table)} assets with codes of model {run.model_id} into {path}")
    return 0


def cmd_catalogue_info(args: argparse.Namespace) -> int:
    from backend.library.tags import tag_status

    run, cat, _ = _open(args, need_codes=False)
    with cat:
        data = {"catalogue": str(cat.path), "schema_version": cat.schema_version, "models": cat.models(),
                "assets": cat.count("assets"), "tags": cat.count("tags"), "neighbours": cat.count("neighbours"),
                "tag_status": tag_status(cat), "size": cat.size_report()}
    lines = [f"{cat.path} (schema v{data['schema_version']}): {data['assets']} assets, {data['tags']} tag rows, "
             f"{data['tag_status']['tagged_assets']} assets with artist tags"]
    size = data["size"]
    if size["assets"]:
        per = ", ".join(f"{k} {v / 1024:.1f}" for k, v in size["parts_per_asset"].items())
        lines.append(f"  size: {size['db_bytes'] / 2**20:.1f} MiB (file {size['file_bytes'] / 2**20:.1f} MiB "
                     f"+ WAL {size['wal_bytes'] / 2**20:.1f} MiB), "
                     f"{size['bytes_per_asset'] / 1024:.1f} KiB per asset ({per} KiB)")
    for m in data["models"]:
        lines.append(f"  model {m['model_id']} ({m['preset']}){' [active]' if m['active'] else ''}: {m['codes']} codes")
    if data["tag_status"]["message"]:
        lines.append(data["tag_status"]["message"])
    _emit(args, data, "\n".join(lines))
    return 0


# -- tags ---------------------------------------------------------------------------------------

def cmd_tags_train(args: argparse.Namespace) -> int:
    from backend.library.errors import LibraryError
    from backend.library.tag_lists import read_exclusive_groups
    from backend.library.tags import TagModel, few_tags_help

    if args.target_precision is not None and not 0.0 < args.target_precision <= 1.0:
        raise CommandError(f"--target-precision must be in (0, 1], got {args.target_precision}")
    with _errors():
        declared = read_exclusive_groups(args.exclusive) if args.exclusive is not None else None
    run, cat, table = _open(args)
    with cat, _errors():
        from backend.library.review import training_labels

        labels = training_labels(cat, table.ids)  # artist tags + review answers (rejections are negatives)
        model = TagModel(run.model_id, use_size=not args.no_size)
        with suppress(LibraryError):  # the tag model being replaced: its target and declared groups are kept
            old = TagModel.load(_tag_model_path(args), expect_model=run.model_id)
            model.target_precision, model.declared_groups = old.target_precision, old.declared_groups
        report = model.fit(table.shape, table.texture, labels.tag_sets, table.size, min_examples=args.min_examples,
                           target_precision=args.target_precision, declared_groups=declared, **labels.fit_kwargs())
        if not model.classifiers:
            # Nothing learnt: keep any earlier tag model rather than replace it by an empty one.
            _emit(args, {"tag_model": None, "report": report, "trained": []}, _report_text(report))
            raise CommandError(few_tags_help(args.min_examples))
        path = model.save(_tag_model_path(args))
    _emit(args, {"tag_model": str(path), **_calibration(model), "report": report, "trained": model.tags},
          _report_text(report, model) + f"\nsaved {path}")
    return 0


def _calibration(model: Any) -> dict[str, Any]:
    """What decides which tags are written: the target precision, per-tag thresholds and exclusive groups."""
    return {"target_precision": model.target_precision, "thresholds": dict(sorted(model.thresholds.items())),
            "exclusive_groups": model.exclusive_groups, "declared_groups": model.declared_groups}


def _report_text(report: dict[str, dict[str, Any]], model: Any = None) -> str:
    """Per tag: out-of-fold scores at 0.5 and the write threshold (or "suggest only") with its OOF precision/recall."""
    lines = [f"{'tag':24s} {'pos':>4s} {'neg':>4s} {'prec':>5s} {'recall':>6s} {'AP':>5s}  written at (OOF prec/recall)"]
    for tag, r in sorted(report.items()):
        if r["status"] == "trained" and "precision" not in r:  # retrained after a review answer: no CV scores
            lines.append(f"{tag:24s} {r['positives']:4d} {r['negatives']:4d}  trained (not cross-validated: "
                         f"run asset2vec tags train for scores)  {_write_text(r)}")
        elif r["status"] == "trained":
            lines.append(f"{tag:24s} {r['positives']:4d} {r['negatives']:4d} {r['precision']:5.2f} {r['recall']:6.2f} "
                         f"{r['average_precision']:5.2f}  {_write_text(r)}")
        else:
            lines.append(f"{tag:24s} {r['positives']:4d} {r['negatives']:4d}  skipped: {r['reason']}")
    if model is not None:
        written = sum(t is not None for t in model.thresholds.values())
        lines.append(f"target precision {model.target_precision:.2f}: {written} of {len(model.thresholds)} tags are "
                     "written into files, the others are suggestions only")
        groups = model.exclusive_groups
        lines.append("exclusive groups (at most one written): " + ("; ".join(" / ".join(g) for g in groups)
                                                                   if groups else "none"))
    return "\n".join(lines)


def _write_text(r: dict[str, Any]) -> str:
    w = r.get("write_threshold")
    return "suggest only" if w is None else f">= {w:.2f} ({r['write_precision']:.2f}/{r['write_recall']:.2f})"


def cmd_tags_predict(args: argparse.Namespace) -> int:
    from backend.library.tags import TagModel

    if not 0.0 < args.threshold <= 1.0:
        raise CommandError(f"--threshold must be in (0, 1], got {args.threshold}")
    run, cat, table = _open(args)
    with cat, _errors():
        _no_tags_check(cat, _tag_model_path(args))
        model = TagModel.load(_tag_model_path(args), expect_model=run.model_id)
        rows = [table.index_of(a) for a in args.assets] if args.assets else list(range(len(table)))
        from backend.library.review import predict_table  # a descriptor model reads the stored appearance features

        sub, probs = predict_table(cat, model, table.subset(rows))
        cat.set_predicted_tags(run.model_id, {int(a): p for a, p in zip(sub.ids, probs, strict=True)})
        artist = cat.artist_tag_sets(sub.ids)
        out = {}
        for n, p, a in zip(sub.names, probs, artist, strict=True):
            d = model.decide(p, set(a or ()))
            out[n] = {"artist": sorted(a or []), "proposed": TagModel.proposals(p, a, args.threshold),
                      "write": d.write, "suggest": d.suggest}
    text = "\n".join(f"{n}: + {', '.join(f'{t} ({p:.2f})' for t, p in v['proposed'].items()) or '-'}"
                     for n, v in out.items())
    _emit(args, out, text)
    return 0


def cmd_tags_report(args: argparse.Namespace) -> int:
    from backend.library.tags import TagModel

    run = _load_run(args)
    with _errors():
        if not _tag_model_path(args).is_file():
            run, cat, _ = _open(args, need_codes=False)
            with cat:
                _no_tags_check(cat, _tag_model_path(args))
        model = TagModel.load(_tag_model_path(args), expect_model=run.model_id)
    _emit(args, {"report": model.report, **_calibration(model)}, _report_text(model.report, model))
    return 0


def _no_tags_check(cat: Any, tag_model: Path) -> None:
    """No tag model and no tagged asset: say how tags start (instead of "train one first")."""
    from backend.library.tags import NoTagsError, tag_status

    if not tag_model.is_file() and tag_status(cat)["message"]:
        raise NoTagsError()


def cmd_tags_import(args: argparse.Namespace) -> int:
    from backend.library.catalogue import Catalogue
    from backend.library.tag_lists import import_tag_list, read_tag_list

    if args.run is None and args.catalogue is None:
        raise CommandError("say which catalogue gets the tags: --run RUN_DIR or --catalogue FILE")
    with _errors():
        tags = read_tag_list(args.file)  # a bad file fails before any catalogue is opened or created
        if args.run is not None:
            _, cat, _ = _open(args, need_codes=False)
        else:
            cat = Catalogue(args.catalogue, create=False)
        with cat:
            result = import_tag_list(cat, tags, skip_unknown=args.skip_unknown)
    lines = [f"added {result['added']} artist tags to {result['assets']} assets"
             + (f" ({result['already']} they already had)" if result["already"] else "")
             + f"; {result['tagged_assets']} assets have tags now"]
    if result["tags"]:
        lines.append("tags: " + ", ".join(f"{t} ({n})" for t, n in result["tags"].items()))
    if result["unknown"]:
        shown = ", ".join(result["unknown"][:5]) + (" ..." if len(result["unknown"]) > 5 else "")
        lines.append(f"skipped {len(result['unknown'])} names not in the catalogue: {shown}")
    where = f"--run {args.run}" if args.run is not None else "--run RUN_DIR"
    lines.append(f"next: asset2vec tags train {where}" + (f" --catalogue {args.catalogue}" if args.catalogue else ""))
    _emit(args, result, "\n".join(lines))
    return 0


def cmd_tags_review(args: argparse.Namespace) -> int:
    """Interactive review: one question at a time, retraining and saving the tag model after every answer."""
    from backend.library import review
    from backend.library.tags import TagModel, few_tags_help

    if args.n < 1:
        raise CommandError(f"-n must be at least 1, got {args.n}")
    run, cat, table = _open(args)
    path = _tag_model_path(args)
    out = sys.stderr if args.json else sys.stdout  # --json keeps stdout for the final JSON only
    answered: list[dict[str, Any]] = []
    skipped: list[tuple[int, str]] = []
    with cat, _errors():
        if path.is_file():
            model = TagModel.load(path, expect_model=run.model_id)
        else:
            _no_tags_check(cat, path)
            _say(args, f"no tag model yet: training one from the artists' tags ({path})")
            model, _ = review.fit_tag_model(cat, run.model_id, table)
            if not model.classifiers:
                raise CommandError(few_tags_help())
            model.save(path)
        review.predict_catalogue(cat, model)  # every asset gets this tag model's current predictions
        end = ""
        while len(answered) + len(skipped) < args.n:
            queue = review.review_queue(cat, run.model_id, 1, exclude=skipped, model=model)
            if not queue:
                end = ("nothing (more) to review: every prediction of this tag model is answered, skipped or "
                       "already an artist tag")
                break
            item = queue[0]
            print(review_question(item, len(answered) + len(skipped) + 1, args.n), file=out, flush=True)
            key = ask_review_answer(out)
            if key == "q":
                end = "stopped"
                break
            if key == "s":
                skipped.append((item["asset_id"], item["tag"]))
                continue
            new_model, summary = review.answer_and_retrain(cat, run.model_id, item["name"], item["tag"], key == "y",
                                                           use_size=model.use_size, seed=model.seed, previous=model)
            if new_model is not None:
                model = new_model
                model.save(path)
            answered.append(summary)
            print(f"  {summary['message']}", file=out, flush=True)
    accepted = sum(a["accepted"] for a in answered)
    text = (f"{end + '; ' if end else ''}answered {len(answered)} ({accepted} accepted, {len(answered) - accepted} "
            f"rejected), skipped {len(skipped)}; tag model {path}")
    _emit(args, {"answered": answered, "skipped": len(skipped), "tag_model": str(path), "end": end}, text)
    return 0


# -- similarity ---------------------------------------------------------------------------------

def cmd_similar(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from backend.library.similarity import SimilarityIndex

    if args.k < 1:
        raise CommandError(f"-k must be at least 1, got {args.k}")
    if not args.all and not args.asset:
        raise CommandError("name an asset, or pass --all to store suggestions for every asset")
    run, cat, table = _open(args)
    with cat, _errors():
        index = SimilarityIndex(table, args.space, size_weight=args.size_weight)
        if args.all:
            nb = index.all_neighbours(args.k, args.exclude_family)
            cat.set_neighbours(run.model_id, args.space, nb)
            _emit(args, {"stored": len(nb), "space": args.space, "k": args.k},
                  f"stored {args.k} {args.space}-space suggestions for each of {len(nb)} assets")
            return 0
        found = index.similar(args.asset, args.k, exclude_family=args.exclude_family)
    text = "\n".join(f"{n.rank + 1:3d}. {n.name:32s} {n.distance:8.3f}  {n.family}" for n in found)
    _emit(args, [asdict(n) for n in found], f"nearest to {args.asset} in {args.space} space:\n{text}")
    return 0


# -- exploration --------------------------------------------------------------------------------

def cmd_explore(args: argparse.Namespace) -> int:
    from backend.library.report import explore_library

    run, cat, table = _open(args)
    with cat, _errors():
        summary = explore_library(run, cat, table, args.out, method=args.method, image_size=args.image_size,
                                  progress=lambda msg: _say(args, msg), max_shown=max(1, args.max_shown))
    note = (summary.get("tags") or {}).get("message")
    _emit(args, summary, f"wrote {args.out / 'index.html'} ({len(summary['files'])} files)" + (f"\n{note}" if note else ""))
    return 0


def cmd_sparse(args: argparse.Namespace) -> int:
    from backend.library import explore, style

    if args.n < 1:
        raise CommandError(f"-n must be at least 1, got {args.n}")
    run, cat, table = _open(args)
    with cat, _errors():
        regions = explore.sparse_regions(explore.space_features(table, args.space), table.names, n_regions=args.n)
        if args.render and regions:
            codes = [explore.mix_codes(table, r["weights"]) for r in regions]
            import numpy as np

            imgs = style.render_codes(run, np.stack([c[0] for c in codes]), np.stack([c[1] for c in codes]), 64)
            style.save_grid(imgs[None], args.render, col_labels=[f"#{i + 1}" for i in range(len(regions))])
    text = "\n".join(f"#{i + 1}: {r['score']:.1f}x the usual gap; nearest: {', '.join(r['nearest'])}"
                     for i, r in enumerate(regions)) or "no sparse region found inside the library"
    _emit(args, regions, text)
    return 0


def cmd_duplicates(args: argparse.Namespace) -> int:
    from backend.library import explore

    if args.ratio <= 0:
        raise CommandError(f"--ratio must be positive, got {args.ratio}")
    run, cat, table = _open(args)
    with cat, _errors():
        groups = explore.near_duplicates(table, args.ratio)
    text = "\n".join(" = ".join(g["assets"]) for g in groups) or "no near-duplicates"
    _emit(args, groups, text)
    return 0


def cmd_style_grid(args: argparse.Namespace) -> int:
    from backend.library import style

    run, cat, table = _open(args)
    with cat, _errors():
        grid = style.style_grid(run, table, args.assets, args.textures, image_size=args.image_size)
        cols = args.textures or args.assets
        path = style.save_grid(grid, args.out, col_labels=cols, row_labels=args.assets, row_label_px=90)
    _emit(args, {"png": str(path), "rows": args.assets, "cols": cols},
          f"wrote {path}: rows = shape of {', '.join(args.assets)}; columns = texture of {', '.join(cols)}")
    return 0


def cmd_weak_spots(args: argparse.Namespace) -> int:
    from backend.library import explore

    run, cat, table = _open(args)
    with cat, _errors():
        scores = explore.read_scores_csv(args.scores)
        feats = explore.space_features(table, "both")
        cl = explore.clusters(feats, table.names)
        result = explore.weak_spots(table, scores, k=args.k, higher_is_worse=not args.lower_is_worse,
                                    cluster_labels=cl["labels"], cluster_names=[c["name"] for c in cl["clusters"]])
        if args.out:
            import numpy as np

            coords = explore.embed_2d(feats)
            vals = np.array([result["smoothed"][n] for n in table.names])
            explore.plot_map(coords, table.names, args.out, values=vals, title="weak spots (k-NN smoothed score)")
    lines = [f"scored {result['scored']} assets (k={result['k']}); worst spots:"]
    for s in result["spots"]:
        lines.append(f"  around {s['centre']}: smoothed score {s['smoothed_score']:.3f} ({', '.join(s['assets'])})")
    if result["ignored_unknown_assets"]:
        lines.append(f"ignored {len(result['ignored_unknown_assets'])} names not in the catalogue")
    _emit(args, result, "\n".join(lines))
    return 0


def cmd_query_image(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from backend.library.image_query import query_image

    run, cat, table = _open(args)
    with cat, _errors():
        result = query_image(run, table, args.image, k=args.k, steps=args.steps, space=args.space,
                             progress=lambda f, msg: _say(args, f"{msg} ({100 * f:.0f}%)"), method=args.method,
                             catalogue=cat)
    head = ("answered by the appearance feature" if result["method"] == "feature" else
            f"answered by a decoder fit{' (' + result['fallback'] + ')' if result.get('fallback') else ''}; "
            f"best pose: rig view {result['view']} ({result['psnr']:.1f} dB)")
    text = (head + "\n"
            + "\n".join(f"{n.rank + 1:3d}. {n.name:32s} {n.distance:8.3f}" for n in result["neighbours"]))
    data = {**result, "neighbours": [asdict(n) for n in result["neighbours"]]}
    _emit(args, data, text)
    return 0
