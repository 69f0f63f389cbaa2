#!/usr/bin/env python3
"""Tags an artist can trust (issue 17): precision and recall of the tags Asset2Vec would WRITE, on held-out assets.

    .venv/bin/python -m bench.tags --bundles DIR --run RUN [--label NAME] [--bundles ... --run ...]...
                                   [--target 0.9] [--folds 5] [--seed 0] [--descriptor]
                                   [--out bench/results/tags.json]

Each ``--bundles`` pairs with the ``--run`` (and ``--label``) at the same position: the run's trained codes and the
artist tags of its assets (those with a bundle in ``DIR``). The assets are split in ``--folds`` folds; for each
fold a tag model is trained as ``asset2vec tags train`` does on the other folds (its write thresholds calibrated
out of fold inside that training, at ``--target``), then predicts the held-out fold, and
:meth:`backend.library.tags.TagModel.decide` says what would be written on each held-out asset (it has no tag yet).
Reported per library, pooled over the folds:

* ``calibrated``: written = ``decide().write``: precision, recall (of all the held-out assets' artist tags and of
  those of learnt tags), tags written per asset, exclusive-group violations (two members of a group written on
  one asset; must be 0), and per tag its write count and precision;
* ``old_rule``: written = every tag at p >= 0.5 (what Embed and bulk-tag wrote before), same figures, and the
  violations of the same groups, for comparison.

With ``--descriptor`` each library is also scored with tag models on the product's descriptor (issue 15:
pretrained multi-view appearance feature + codes + size, ``TagModel(descriptor=...)``; the CNN features are
computed once and cached next to the bundles), under ``descriptor``.

Writes ``--out`` with the machine info (``bench.machine``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import machine_info

ROOT = Path(__file__).resolve().parents[1]


def _score(written: list[dict[str, float]], truth: list[set[str]], learnt: list[set[str]],
           groups: list[list[list[str]]]) -> dict[str, Any]:
    """Pooled precision/recall of ``written`` against ``truth``; ``groups[i]``: the exclusive groups for asset i."""
    tp = n_written = 0
    per_tag: dict[str, list[int]] = {}
    violations = 0
    for w, t, g in zip(written, truth, groups, strict=True):
        for tag in w:
            hit = int(tag in t)
            tp += hit
            n_written += 1
            per_tag.setdefault(tag, []).append(hit)
        violations += sum(len(set(w) & set(grp)) > 1 for grp in g)
    n_true = sum(len(t) for t in truth)
    n_true_learnt = sum(len(t & lt) for t, lt in zip(truth, learnt, strict=True))
    return {
        "written": n_written,
        "precision": tp / n_written if n_written else None,
        "recall_all_tags": tp / n_true if n_true else None,
        "recall_learnt_tags": tp / n_true_learnt if n_true_learnt else None,
        "tags_written_per_asset": n_written / max(len(written), 1),
        "exclusive_violations": int(violations),
        "per_tag": {t: {"written": len(h), "precision": float(np.mean(h))} for t, h in sorted(per_tag.items())},
    }


def _appearance(bundles_dir: Path, names: list[str]) -> np.ndarray:
    """The descriptor's appearance block (EfficientNet-Lite1 head, mean+max over the 18 views) per asset name."""
    from backend.features import DEFAULT_SPEC, asset_features
    from backend.training.data import find_bundles, read_bundles

    found = {b.asset.name: b for b in read_bundles(find_bundles(bundles_dir))}
    return asset_features([found[n] for n in names], DEFAULT_SPEC, layers=("head_avg",), view_pool="meanmax")


def _descriptor_model(model_id: str, appearance: np.ndarray, shape: np.ndarray, texture: np.ndarray,
                      size: np.ndarray) -> Any:
    from backend.features.descriptor import Descriptor, log_size
    from backend.library.tags import TagModel

    d = Descriptor().fit({"appearance": appearance, "shape": shape, "texture": texture, "size": log_size(size)})
    return TagModel(model_id, descriptor=d.to_json())


def evaluate_library(label: str, bundles_dir: Path, run_dir: Path, target: float, folds: int, seed: int,
                     descriptor: bool = False) -> dict[str, Any]:
    from sklearn.model_selection import KFold

    from backend.library.tags import TagModel
    from backend.training.data import find_bundles
    from backend.training.run import load_run

    run = load_run(run_dir, device="cpu")
    have = {p.name for p in find_bundles(bundles_dir)} if bundles_dir.is_dir() else set()
    idx = np.array([i for i, a in enumerate(run.assets) if not have or _bundle_name(a.name) in have], np.int64)
    if not len(idx):
        idx = np.arange(len(run.assets))
    assets = [run.assets[i] for i in idx]
    shape, texture = run.shape_codes[idx], run.texture_codes[idx]
    size = np.array([a.size for a in assets], np.float64)
    tags = [set(a.tags) for a in assets]
    tagged = np.array([bool(t) for t in tags])
    appearance = _appearance(bundles_dir, [a.name for a in assets]) if descriptor else None
    kinds = ["codes"] + (["descriptor"] if descriptor else [])
    print(f"[{label}] {len(assets)} assets ({int(tagged.sum())} tagged), run {run_dir}", flush=True)
    res: dict[str, Any] = {"label": label, "run": str(run_dir), "bundles": str(bundles_dir), "model_id": run.model_id,
                           "assets": len(assets), "tagged_assets": int(tagged.sum()), "target_precision": target,
                           "folds": folds, "seed": seed}
    rows = np.flatnonzero(tagged)  # held-out assets must have artist tags to score against
    for kind in kinds:
        written_new: list[dict[str, float]] = []
        written_old: list[dict[str, float]] = []
        truth: list[set[str]] = []
        learnt: list[set[str]] = []
        groups: list[list[list[str]]] = []
        fold_info = []
        t0 = time.perf_counter()
        for k, (tr, te) in enumerate(KFold(folds, shuffle=True, random_state=seed).split(rows)):
            train, test = rows[tr], rows[te]
            app_tr = app_te = None
            if kind == "descriptor":
                assert appearance is not None
                app_tr, app_te = appearance[train], appearance[test]
                model = _descriptor_model(run.model_id, app_tr, shape[train], texture[train], size[train])
            else:
                model = TagModel(run.model_id)
            model.fit(shape[train], texture[train], [tags[i] for i in train], size[train], target_precision=target,
                      appearance=app_tr)
            probs = model.predict(shape[test], texture[test], size[test], appearance=app_te)
            for i, p in zip(test, probs, strict=True):
                written_new.append(model.decide(p, set()).write)
                written_old.append(TagModel.proposals(p, set(), 0.5))
                truth.append(tags[i])
                learnt.append(set(model.tags))
                groups.append(model.exclusive_groups)
            fold_info.append({"train": len(train), "test": len(test), "tags_learnt": len(model.tags),
                              "tags_writable": sum(v is not None for v in model.thresholds.values()),
                              "exclusive_groups": len(model.exclusive_groups)})
            print(f"  [{kind}] fold {k + 1}/{folds}: {fold_info[-1]}", flush=True)
        part = {"seconds": time.perf_counter() - t0, "per_fold": fold_info,
                "calibrated": _score(written_new, truth, learnt, groups),
                "old_rule": _score(written_old, truth, learnt, groups)}
        for key in ("calibrated", "old_rule"):
            r = part[key]
            print(f"  [{kind}] {key:10s}: precision {_f(r['precision'])}, recall {_f(r['recall_all_tags'])} "
                  f"(learnt tags {_f(r['recall_learnt_tags'])}), {r['tags_written_per_asset']:.2f} tags/asset, "
                  f"{r['exclusive_violations']} exclusive violations", flush=True)
        if kind == "codes":
            res.update(part)  # the product's default tag model (codes + size) at the top level
        else:
            res[kind] = part
    return res


def _bundle_name(asset_name: str) -> str:
    """The bundle folder name of an asset (``shared.naming``'s safe folder name)."""
    from shared.naming import safe_folder_name

    return safe_folder_name(asset_name)


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundles", type=Path, action="append", required=True, help="a library's bundles folder")
    ap.add_argument("--run", type=Path, action="append", required=True, help="the trained run of those bundles")
    ap.add_argument("--label", action="append", default=None, help="a name per library (default: the run folder)")
    ap.add_argument("--target", type=float, default=0.9, help="target precision of written tags (default 0.9)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--descriptor", action="store_true",
                    help="also score tag models on the product's descriptor (pretrained appearance + codes + size)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "tags.json")
    args = ap.parse_args(argv)
    if len(args.bundles) != len(args.run) or (args.label and len(args.label) != len(args.run)):
        ap.error("give one --run (and --label, if any) per --bundles")
    labels = args.label or [r.name for r in args.run]
    info = machine_info()
    libs = [evaluate_library(lb, b, r, args.target, args.folds, args.seed, args.descriptor)
            for lb, b, r in zip(labels, args.bundles, args.run, strict=True)]
    out = {"benchmark": "tags", "issue": 17, "machine": info, "libraries": libs,
           "command": "python -m bench.tags " + " ".join(sys.argv[1:] if argv is None else argv)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
