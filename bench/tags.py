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

With ``--answers N`` the first N folds also score what Embed answers for a NEW asset (under ``answers``): an
instant encoder is trained on the fold's training assets only (their views -> their codes, ``--encoder-steps``),
each held-out asset gets its **instant** code (that encoder) and its **refined** code (inversion with the decoder
frozen, started from the instant code, a third of the preset's inversion steps: what the service's refinement does),
and the fold's tag model decides on both (plus the asset's ``training`` code, for reference). Reported: precision
and recall of the written tags per answer kind, and how many tags written from the instant answer the refined one
no longer writes (what the add-on removes after refinement) or newly writes. The decoder was trained on every asset
(held-out ones included: retraining it per fold is out of reach on a CPU), so the refined codes are, if anything,
optimistic; the encoder and the tag models never saw the held-out assets. ``--answer-max-assets`` caps the
held-out assets per fold (a fixed random subset) to keep the inversion short on a CPU.

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


def _answer_codes(run: Any, bundles: dict[str, Any], train_names: list[str], train_codes: np.ndarray,
                  test_names: list[str], steps: int, seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(instant [T, D], refined [T, D], info)`` codes of the held-out assets ``test_names``: an encoder fitted on
    the training assets' views and codes only, then the service's refinement (inversion from the instant code)."""
    from backend.training.encoder import fit_encoder, views_tensor

    t0 = time.perf_counter()
    enc, steps, loss = fit_encoder(views_tensor([bundles[n] for n in train_names]), train_codes,
                                   run.shape_codes.shape[1], minutes=60.0, steps=steps, seed=seed,
                                   show_progress=False)  # fixed steps: the same encoder however busy the CPU is
    t1 = time.perf_counter()
    test = [bundles[n] for n in test_names]
    instant = enc.encode(views_tensor(test))
    refine_steps = max(1, round(run.config.train.inversion_steps / 3))  # = the service's REFINE_SHARE
    refined = run.invert(test, steps=refine_steps, init=instant)
    codes = np.stack([np.concatenate([np.ravel(r.shape), np.ravel(r.texture)]) for r in refined])
    return instant, codes, {"encoder_steps": steps, "encoder_loss": round(float(loss), 4),
                            "encoder_seconds": round(t1 - t0, 1), "refine_steps": refine_steps,
                            "refine_seconds": round(time.perf_counter() - t1, 1),
                            "refined_psnr": round(float(np.mean([r.psnr for r in refined])), 2)}


def _flips(instant: list[dict[str, float]], refined: list[dict[str, float]], truth: list[set[str]]) -> dict[str, Any]:
    """Tags written from the instant answer that the refined one no longer writes (removed by the add-on) and
    tags only the refined answer writes, with how many of each were right."""
    removed = [(t, t in tr) for i, r, tr in zip(instant, refined, truth, strict=True) for t in i if t not in r]
    added = [(t, t in tr) for i, r, tr in zip(instant, refined, truth, strict=True) for t in r if t not in i]
    return {"removed_after_refine": len(removed), "removed_that_were_right": sum(ok for _, ok in removed),
            "added_after_refine": len(added), "added_that_are_right": sum(ok for _, ok in added)}


def evaluate_library(label: str, bundles_dir: Path, run_dir: Path, target: float, folds: int, seed: int,
                     descriptor: bool = False, answers: int = 0, encoder_steps: int = 200,
                     answer_max_assets: int | None = None) -> dict[str, Any]:
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
    # Named by what they are, not by this machine's folders (the JSON is committed).
    res: dict[str, Any] = {"label": label, "run": f"{label} run ({run.preset})", "bundles": f"{label} library bundles",
                           "model_id": run.model_id,
                           "assets": len(assets), "tagged_assets": int(tagged.sum()), "target_precision": target,
                           "folds": folds, "seed": seed}
    rows = np.flatnonzero(tagged)  # held-out assets must have artist tags to score against
    bundles: dict[str, Any] = {}
    if answers:
        from backend.training.data import find_bundles, read_bundles

        bundles = {b.asset.name: b for b in read_bundles(find_bundles(bundles_dir))}
    codes = np.concatenate([shape, texture], axis=1)
    dim = shape.shape[1]
    answer_kinds = ("training", "instant", "refined")
    answered: dict[str, list[dict[str, float]]] = {k: [] for k in answer_kinds}
    answer_truth: list[set[str]] = []
    answer_learnt: list[set[str]] = []
    answer_groups: list[list[list[str]]] = []
    answer_info: list[dict[str, Any]] = []
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
            if kind == "codes" and k < answers:
                pick = test
                if answer_max_assets and len(test) > answer_max_assets:
                    pick = np.sort(np.random.default_rng(seed + k).choice(test, answer_max_assets, replace=False))
                # The encoder learns from every training asset with a bundle (tagged or not), never a held-out one.
                enc_train = [i for i in range(len(assets)) if i not in set(test.tolist()) and assets[i].name in bundles]
                instant, refined, info = _answer_codes(run, bundles, [assets[i].name for i in enc_train],
                                                       codes[enc_train], [assets[i].name for i in pick],
                                                       encoder_steps, seed + k)
                info.update(fold=k, held_out=len(pick))
                answer_info.append(info)
                print(f"  [answers] fold {k + 1}: {info}", flush=True)
                for kind_a, z in (("training", codes[pick]), ("instant", instant), ("refined", refined)):
                    pa = model.predict(z[:, :dim], z[:, dim:], size[pick])
                    answered[kind_a] += [model.decide(p, set()).write for p in pa]
                answer_truth += [tags[i] for i in pick]
                answer_learnt += [set(model.tags)] * len(pick)
                answer_groups += [model.exclusive_groups] * len(pick)
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
        if kind == "codes" and answer_info:
            part["answers"] = {"per_fold": answer_info, "held_out_assets": len(answer_truth),
                               **{a: _score(answered[a], answer_truth, answer_learnt, answer_groups)
                                  for a in answer_kinds},
                               "instant_vs_refined": _flips(answered["instant"], answered["refined"], answer_truth)}
            for a in answer_kinds:
                r = part["answers"][a]
                print(f"  [answers] {a:8s}: precision {_f(r['precision'])}, recall {_f(r['recall_all_tags'])}, "
                      f"{r['tags_written_per_asset']:.2f} tags/asset, {r['exclusive_violations']} violations",
                      flush=True)
            print(f"  [answers] instant -> refined: {part['answers']['instant_vs_refined']}", flush=True)
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


def portable_argv(argv: list[str]) -> list[str]:
    """``argv`` with the folders named by placeholders (``--bundles X --label sample`` -> ``SAMPLE_BUNDLES``)."""
    labels = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--label"]
    out, seen = [], {"--bundles": 0, "--run": 0}
    for i, a in enumerate(argv):
        flag = argv[i - 1] if i else ""
        if flag in seen:
            n = seen[flag]
            seen[flag] += 1
            name = labels[n] if n < len(labels) else f"LIBRARY{n + 1}"
            a = f"{name.upper()}_{flag.lstrip('-').upper()}"
        out.append(a)
    return out


def _per_library(ap: argparse.ArgumentParser, flag: str, given: list[int] | None, n: int, default: int) -> list[int]:
    """A per-library option: not given (``default``), given once (every library) or once per library."""
    if not given:
        return [default] * n
    if len(given) == 1:
        return given * n
    if len(given) != n:
        ap.error(f"give {flag} once, or once per --bundles")
    return given


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
    ap.add_argument("--answers", type=int, action="append", default=None, metavar="N",
                    help="in the first N folds, also score the instant (encoder) and refined (inversion) answers for "
                         "held-out assets (trains an encoder and inverts per fold; default 0: off); once for every "
                         "library or once per --bundles")
    ap.add_argument("--encoder-steps", type=int, default=200, help="encoder training steps per fold (default 200)")
    ap.add_argument("--answer-max-assets", type=int, action="append", default=None,
                    help="at most this many held-out assets per fold for the answers (default: all); once for every "
                         "library or once per --bundles (0: all)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "tags.json")
    args = ap.parse_args(argv)
    if len(args.bundles) != len(args.run) or (args.label and len(args.label) != len(args.run)):
        ap.error("give one --run (and --label, if any) per --bundles")
    labels = args.label or [r.name for r in args.run]
    answers = _per_library(ap, "--answers", args.answers, len(args.run), 0)
    caps = _per_library(ap, "--answer-max-assets", args.answer_max_assets, len(args.run), 0)
    info = machine_info()
    libs = [evaluate_library(lb, b, r, args.target, args.folds, args.seed, args.descriptor, n, args.encoder_steps,
                             cap or None)
            for lb, b, r, n, cap in zip(labels, args.bundles, args.run, answers, caps, strict=True)]
    out = {"benchmark": "tags", "issue": 17, "machine": info, "libraries": libs,
           "command": "python -m bench.tags " + " ".join(portable_argv(sys.argv[1:] if argv is None else argv))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
