#!/usr/bin/env python3
"""Benchmark the backend service on loopback: request latency under concurrent load, and embed end to end.

    .venv/bin/python -m bench.service                       # tiny synthetic run, trained here (latency only)
    .venv/bin/python -m bench.service --run RUN_DIR [--bundle BUNDLE_DIR_OR_ZIP]

* Load: ``--clients`` threads (default 8) each send ``--requests`` requests (default 200; 1600 in all) through the add-on's
  own client (``shared.client``: urllib, one connection per request, like Blender), every one through the
  request policy of issue 18 (client header, Origin and Content-Type checks): a mix of info, review-queue
  and neighbours queries (random asset, random space) and POSTs (cancel of a finished job) against a
  catalogue padded to ``--library`` assets. Reports p50/p90/p99/max latency, throughput and errors (the
  target is zero errors), and checks that cross-site requests are refused (``policy``).
* Embed: ``--embeds`` uploads of a real bundle, each timed from upload to result (inversion with the
  run's preset steps unless ``--invert-steps``), while nothing else runs.

The run folder is only read: the catalogue and tag model are written to a temporary folder. Results are
printed and written to ``bench/results/service.json`` with machine, CPU, core count and device.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from backend.library.catalogue import Catalogue, import_run
from backend.service.engine import Engine
from backend.service.server import Service
from bench.machine import cpu_name
from shared import bundle as B
from shared.client import BackendError, Client

ROOT = Path(__file__).resolve().parents[1]


def synthetic_run(work: Path, steps: int) -> tuple[Path, Path]:
    """Train a tiny run on 8 synthetic assets (tests/backend/synthetic.py); returns (run, bundle to embed)."""
    from backend.training.trainer import train
    from tests.backend import synthetic

    items = [(k, c) for k in ("ball", "crate") for c in ("red", "green", "blue", "yellow")]
    synthetic.make_library(work / "library", items, size=32)
    print(f"training a tiny synthetic run ({steps} steps) for the benchmark ...", file=sys.stderr)
    train(work / "library", work / "run", preset="cpu-small", steps=steps, show_progress=True)
    upload = synthetic.write_bundle(work / "upload", "bench_pillar", synthetic.scene("pillar", "blue"), 32)
    return work / "run", upload


def pad_library(cat: Catalogue, model_id: str, total: int, seed: int = 0) -> int:
    """Add random codes (named ``pad_NNNNNN``) so neighbour queries search a library of ``total`` assets."""
    have = next((m["codes"] for m in cat.models() if m["model_id"] == model_id), 0)
    extra = max(0, total - have)
    if not extra:
        return have
    rng = np.random.default_rng(seed)
    with cat.transaction():
        ids = [cat.upsert_asset(B.AssetInfo(name=f"pad_{i:06d}", size=(1.0, 1.0, 1.0))) for i in range(extra)]
        codes = rng.normal(scale=0.05, size=(extra, 64)).astype(np.float32)
        cat.set_codes(model_id, {a: (c[:32], c[32:], None) for a, c in zip(ids, codes, strict=True)}, "encoder")
    return have + extra


#: Request mixes: ``classic`` is the mix earlier releases measured (one info in four, the rest neighbour
#: queries), so figures compare across releases; ``policy`` adds the review queue and a POST through the
#: request policy.
MIXES = {"classic": ["info", "neighbours", "neighbours", "neighbours"],
         "policy": ["info", "review", "cancel", "neighbours", "neighbours"]}


def load_test(client: Client, names: list[str], clients: int, requests: int, seed: int = 0,
              done_job: str | None = None, mix: str = "policy") -> dict:
    rng = random.Random(seed)
    kinds = MIXES[mix] if done_job or mix == "classic" else ["info", "neighbours"]
    plan = [(kinds[i % len(kinds)], rng.choice(names), rng.choice(["shape", "texture", "both"]))
            for i in range(requests)]
    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one(item: tuple) -> None:
        kind, name, space = item
        t0 = time.perf_counter()
        try:
            if kind == "info":
                client.info()
            elif kind == "review":
                client.review_queue(5)
            elif kind == "cancel":  # a POST through the whole policy; cancelling a finished job changes nothing
                assert client.cancel_job(done_job or "").final
            else:
                assert client.neighbours(name, space=space, k=10).neighbours
        except (BackendError, AssertionError) as e:
            with lock:
                errors.append(f"{kind}: {e}")
            return
        with lock:
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(one, plan))
    wall = time.perf_counter() - t0
    ms = sorted(x * 1000 for x in lat)

    def pct(p: float) -> float:
        return round(ms[min(len(ms) - 1, int(round(p / 100 * (len(ms) - 1))))], 2) if ms else float("nan")

    return {
        "mix": {k: kinds.count(k) / len(kinds) for k in dict.fromkeys(kinds)},
        "clients": clients, "requests": requests, "ok": len(lat), "errors": len(errors), "error_samples": errors[:5],
        "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "max_ms": pct(100),
        "mean_ms": round(statistics.fmean(ms), 2) if ms else None,
        "wall_s": round(wall, 3), "requests_per_s": round(len(lat) / wall, 1),
    }


def cross_site(url: str) -> dict:
    """Requests a web page could send (no client header, text/plain JSON, a foreign Origin): all must be refused."""
    import urllib.error
    import urllib.request

    from shared import api

    tries = [
        ("/review", b'{"name": "x", "tag": "t", "accept": true}', {"Content-Type": "text/plain"}),
        ("/embed", b"--b\r\n", {"Content-Type": "multipart/form-data; boundary=b"}),
        ("/train", b"{}", {"Content-Type": "application/json", api.CLIENT_HEADER: api.CLIENT_HEADER_VALUE,
                           "Origin": "https://evil.example"}),
        ("/train", b"{}", {"Content-Type": "text/plain", api.CLIENT_HEADER: api.CLIENT_HEADER_VALUE}),
    ]
    statuses = []
    for path, body, headers in tries:
        req = urllib.request.Request(f"{url}{api.API_PREFIX}{path}", data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                statuses.append(r.status)
        except urllib.error.HTTPError as e:
            statuses.append(e.code)
    return {"statuses": statuses, "refused": sum(s in (403, 415) for s in statuses), "sent": len(statuses)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="trained run folder (default: train a tiny synthetic one)")
    parser.add_argument("--bundle", help="bundle folder or .zip to embed (default: a synthetic asset)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200, help="requests per client")
    parser.add_argument("--library", type=int, default=2000, help="pad the catalogue to this many assets")
    parser.add_argument("--embeds", type=int, default=2)
    parser.add_argument("--invert-steps", type=int, help="inversion steps (default: the run's preset)")
    parser.add_argument("--train-steps", type=int, default=60, help="steps of the synthetic run")
    parser.add_argument("--device", help="torch device for the run")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "service.json"))
    args = parser.parse_args()

    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(prefix="asset2vec-bench-service-") as tmp:
        work = Path(tmp)
        if args.run:
            run_dir, bundle_path = Path(args.run), Path(args.bundle) if args.bundle else None
        else:
            run_dir, bundle_path = synthetic_run(work, args.train_steps)
        from backend.training.run import load_run

        run = load_run(run_dir, device=args.device)
        if bundle_path is None:
            from tests.backend import synthetic

            size = run.config.train.image_size
            bundle_path = synthetic.write_bundle(work / "upload", "bench_pillar", synthetic.scene("pillar", "blue"),
                                                 size)
        upload = work / "upload.zip"
        B.write_archive(B.read_bundle(bundle_path), upload)
        cat = Catalogue(work / "catalogue.sqlite", expect_model=run.model_id)
        import_run(cat, run)
        library = pad_library(cat, run.model_id, args.library)
        engine = Engine(run, cat, tag_model_path=work / "tags.joblib", invert_steps=args.invert_steps)
        names = engine.catalogue.codes(run.model_id).names

        with Service(engine, port=0, advertise=False) as svc:
            client = Client(svc.url, timeout=60)
            client.info()
            done_job = client.start_train("tags")
            client.wait(done_job, timeout=600)
            load_test(client, names, args.clients, 16, seed=1, done_job=done_job)  # warm-up: index build, imports
            total = args.clients * args.requests  # every client sends --requests of them
            classic = load_test(client, names, args.clients, total, done_job=done_job, mix="classic")
            print(f"load (classic mix): {classic['ok']}/{classic['requests']} ok, {classic['errors']} errors, "
                  f"p50 {classic['p50_ms']} ms, p99 {classic['p99_ms']} ms, {classic['requests_per_s']} req/s")
            load = load_test(client, names, args.clients, total, done_job=done_job)
            policy = cross_site(svc.url)
            print(f"policy: {policy['refused']}/{policy['sent']} cross-site requests refused {policy['statuses']}")
            print(f"load: {load['ok']}/{load['requests']} ok, {load['errors']} errors, p50 {load['p50_ms']} ms, "
                  f"p99 {load['p99_ms']} ms, {load['requests_per_s']} req/s ({args.clients} clients, "
                  f"{library} assets)")
            embeds = []
            data = upload.read_bytes()
            for i in range(args.embeds):
                t0 = time.perf_counter()
                res = client.embed(data, timeout=1800)
                wall = time.perf_counter() - t0
                embeds.append({"wall_s": round(wall, 3), "engine_s": res.seconds, "psnr": res.psnr})
                print(f"embed {i + 1}/{args.embeds}: {wall:.2f} s end to end (engine {res.seconds:.2f} s), "
                      f"PSNR {res.psnr} dB")
        engine.close()

    result = {
        "benchmark": "service",
        "machine": platform.node(), "platform": platform.platform(), "cpu": cpu_name(), "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "device": engine.device, "python": platform.python_version(),
        "run": str(run_dir) if args.run else "synthetic (8 assets, tiny training: latency only)",
        "model_id": run.model_id, "preset": run.preset, "image_size": run.config.train.image_size,
        "invert_steps": args.invert_steps or run.config.train.inversion_steps,
        "library_assets": library, "load": load, "load_classic_mix": classic, "policy": policy, "embed": embeds,
        "embed_wall_s_median": statistics.median(e["wall_s"] for e in embeds) if embeds else None,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"written {out}")
    return 0 if load["errors"] == 0 and policy["refused"] == policy["sent"] else 1


if __name__ == "__main__":
    sys.exit(main())
