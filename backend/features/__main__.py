"""Precompute the pretrained multi-view features of every bundle under a folder (cached next to each bundle).

    python -m backend.features BUNDLES [--backbone efficientnet-lite1] [--input-size 160] [--threads 1]

Prints the time per asset; assets whose cache is current are read, not recomputed.
"""

from __future__ import annotations

import argparse
import sys
import time

from .backbone import BACKBONES, FeatureError
from .multiview import FeatureSpec, view_features


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m backend.features", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundles", help="folder searched recursively for bundles")
    ap.add_argument("--backbone", default=FeatureSpec.backbone, choices=sorted(BACKBONES))
    ap.add_argument("--input-size", type=int, default=FeatureSpec.input_size)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    import torch

    from backend.model.errors import ModelError
    from backend.training.data import find_bundles, read_bundles

    torch.set_num_threads(args.threads)
    try:
        bundles = read_bundles(find_bundles(args.bundles))
        spec = FeatureSpec(args.backbone, args.input_size)
        t0 = time.perf_counter()

        def progress(done: int, total: int) -> None:
            if done % 25 == 0 or done == total:
                el = time.perf_counter() - t0
                print(f"{done}/{total} assets, {el / done:.2f} s/asset", flush=True)

        view_features(bundles, spec, progress=progress)
    except (FeatureError, ModelError) as e:
        print(f"asset2vec: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
