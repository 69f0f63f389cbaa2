"""Image query: one picture of an object -> a fitted code -> its nearest assets.

The picture is keyed (RGBA alpha, or a plain background colour estimated from the border),
re-framed like the capture rig frames an asset (object centred, its larger side filling
:data:`FILL` of the image) and resized to the run's training size. The pose is unknown, so a code
is fitted for each of the 18 rig poses at once with the engine's decoder frozen (rays from that
pose through the picture, samples inside the cone of its silhouette); the pose whose fit
reproduces the picture best wins, and its code is searched in the library like any code.

When every asset of the table has a stored appearance feature (issue 15: :mod:`backend.features.library`, filled
by ``asset2vec index``), :func:`query_image` answers with that feature instead (``method="auto"``): the picture,
keyed and re-framed the same way, goes through the pretrained backbone exactly as a captured view does, and its
feature is matched (cosine) against each asset's stored one. It needs no decoder fit (milliseconds instead of tens
of seconds) and finds the pictured asset and its kind more often (measured in docs/quality_descriptor.md, "Image
query on the feature"). The decoder fit stays the answer when some asset has no stored feature, for the ``shape``
and ``texture`` spaces (the feature has no such split) and on request (``method="decoder"``).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from shared import rig

from .catalogue import CodeTable
from .errors import LibraryError
from .similarity import Neighbour, SimilarityIndex, is_listed

#: Fraction of the image the object's larger side spans after re-framing (rig renders fill ~0.7-0.9).
FILL = 0.8
BORDER_PX = 2
KEY_LOW, KEY_HIGH = 0.06, 0.16  # colour distance to the background: fully transparent below, opaque above
MIN_FOREGROUND, MAX_FOREGROUND = 0.005, 0.9


def load_query_image(path: str | os.PathLike[str], size: int, fill: float = FILL) -> np.ndarray:
    """The picture as straight RGBA ``[size, size, 4]`` float32 in [0, 1], keyed and re-framed.

    ``fill``: the fraction of the image the object's larger side should span (the rig's framing).
    """
    path = Path(path)
    if not path.is_file():
        raise LibraryError(f"{path}: no such image")
    try:
        with Image.open(path) as im:
            im.load()
            has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
            rgba = np.asarray(im.convert("RGBA"), np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as e:
        raise LibraryError(f"{path}: not an image Asset2Vec can read (PNG or JPEG expected): {e}") from None
    h, w, _ = rgba.shape
    if min(h, w) < 16:
        raise LibraryError(f"{path}: image is {w}x{h} px; give at least 16x16")
    if not has_alpha or rgba[..., 3].min() > 0.99:
        rgba[..., 3] = _key_background(rgba[..., :3], path)
    alpha = rgba[..., 3]
    frac = float((alpha > 0.5).mean())
    if frac < MIN_FOREGROUND:
        raise LibraryError(f"{path}: no object found (the image is empty or transparent)")
    if frac > MAX_FOREGROUND:
        raise LibraryError(f"{path}: the object fills the whole image; give a picture of one object with some "
                           "background around it (transparent, or a plain colour)")
    return _reframe(rgba, size, fill)


def _key_background(rgb: np.ndarray, path: Path) -> np.ndarray:
    """Alpha ``[H, W]`` from the distance to the border's (plain) background colour."""
    b = BORDER_PX
    border = np.concatenate([rgb[:b].reshape(-1, 3), rgb[-b:].reshape(-1, 3),
                             rgb[:, :b].reshape(-1, 3), rgb[:, -b:].reshape(-1, 3)])
    bg = np.median(border, axis=0)
    if np.median(np.linalg.norm(border - bg, axis=1)) > KEY_LOW / 2 or \
            np.mean(np.linalg.norm(border - bg, axis=1) > KEY_HIGH) > 0.2:
        raise LibraryError(f"{path}: the background is not plain; give an RGBA image with a transparent "
                           "background, or a picture of the object on a single-colour backdrop")
    dist = np.linalg.norm(rgb - bg, axis=-1)
    return np.clip((dist - KEY_LOW) / (KEY_HIGH - KEY_LOW), 0.0, 1.0).astype(np.float32)


def _reframe(rgba: np.ndarray, size: int, fill: float) -> np.ndarray:
    """Centre the object's bounding box and scale its larger side to ``fill * size``."""
    ys, xs = np.nonzero(rgba[..., 3] > 0.5)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = int(np.ceil(max(y1 - y0, x1 - x0) / fill))
    cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
    canvas = np.zeros((side, side, 4), np.float32)
    top, left = cy - side // 2, cx - side // 2
    sy0, sx0 = max(top, 0), max(left, 0)
    sy1, sx1 = min(top + side, rgba.shape[0]), min(left + side, rgba.shape[1])
    canvas[sy0 - top:sy1 - top, sx0 - left:sx1 - left] = rgba[sy0:sy1, sx0:sx1]
    # Resize premultiplied so transparent pixels do not bleed their colour into the edges.
    pre = np.concatenate([canvas[..., :3] * canvas[..., 3:], canvas[..., 3:]], axis=-1)
    small = np.stack([np.asarray(Image.fromarray(pre[..., c]).resize((size, size), Image.Resampling.BOX))
                      for c in range(4)], axis=-1).clip(0, 1)
    a = small[..., 3:]
    straight = np.where(a > 1e-4, small[..., :3] / np.maximum(a, 1e-4), 0.0)
    return np.concatenate([straight.clip(0, 1), a], axis=-1).astype(np.float32)


def library_fill(run: Any, table: CodeTable | None = None, n: int = 6) -> float:
    """How much of a rig view the library's objects fill (median larger bbox side / image side), from renders."""
    shape = table.shape if table is not None else run.shape_codes
    texture = table.texture if table is not None else run.texture_codes
    rows = np.linspace(0, len(shape) - 1, min(n, len(shape))).round().astype(int)
    size = run.config.train.image_size
    imgs = run.render(shape[rows], texture[rows], views=[rig.views()[7]], image_size=size)[:, 0]
    fills = []
    for img in imgs:
        ys, xs = np.nonzero(img[..., 3] > 0.5)
        if len(ys):
            fills.append(max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) / size)
    return float(np.median(fills)) if fills else FILL


def fit_single_view(
    run: Any,
    rgba: np.ndarray,
    steps: int | None = None,
    rays_per_pose: int = 128,
    keep: int = 3,
    progress: Any = None,
) -> list[dict[str, Any]]:
    """Fit a code ``[64]`` to one picture ``[S, S, 4]`` (straight RGBA) for each of the 18 rig poses.

    The decoder is frozen; each pose gets its own code, rays come from that pose's camera through
    the picture, and samples are placed in the cone carved from the picture's silhouette (the
    single-view visual hull). After a third of the steps only the ``keep`` best poses continue.
    Returns ``[{"view", "psnr", "shape" [32], "texture" [32]}]``, best first (PSNR on white).
    """
    import torch

    from backend.model import rays as R
    from backend.model.renderer import render_rays

    cfg, sd = run.config.train, run.config.model.shape_dim
    dev = run.device
    steps = max(3, int(steps or cfg.inversion_steps))
    size = rgba.shape[0]
    pre = np.concatenate([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], axis=-1).reshape(-1, 4)
    target = torch.as_tensor(pre, dtype=torch.float32, device=dev)  # [P, 4] premultiplied
    views = rig.views()
    c2w = torch.tensor([v.camera_to_world() for v in views], dtype=torch.float32, device=dev)  # [V, 4, 4]
    o_all, d_all = R.world_rays(c2w[:, None], R.camera_directions(size, dev)[None])  # [V, P, 3]
    silhouette = torch.as_tensor(rgba[..., 3], dtype=torch.float32, device=dev)[None]
    pose_rays = []
    for i in range(len(views)):
        o, d = o_all[i], d_all[i]
        near, far, in_sphere = R.sphere_bounds(o, d)
        grid = R.carve_hull(silhouette, c2w[i:i + 1], cfg.hull_resolution, cfg.hull_alpha, cfg.hull_dilation)
        t0, t1, hit = R.grid_bounds(grid, o, d, near, far)
        idx = torch.nonzero(hit & in_sphere)[:, 0]
        pose_rays.append((o[idx], d[idx], t0[idx], t1[idx], idx))
    if min(len(p[4]) for p in pose_rays) == 0:
        raise LibraryError("the picture's silhouette is empty after framing; give a picture of one whole object")
    init = np.concatenate([run.shape_codes, run.texture_codes], axis=1).mean(0)
    codes = torch.as_tensor(np.tile(init, (len(views), 1)), dtype=torch.float32, device=dev).requires_grad_(True)
    opt = torch.optim.Adam([codes], lr=cfg.inversion_lr)
    gen = torch.Generator(device=dev)
    gen.manual_seed(cfg.seed)
    white = torch.ones(3, device=dev)

    def psnr_of(pose: int) -> float:
        o, d, t0, t1, idx = pose_rays[pose]
        with torch.no_grad():
            z = codes[pose].detach().expand(len(idx), -1)
            rgb, alpha = render_rays(run.decoder, o, d, t0, t1, z[:, :sd], z[:, sd:], cfg.samples_per_ray)
        pred = torch.zeros_like(target)  # rays outside the cone: empty
        pred[idx, :3], pred[idx, 3] = rgb, alpha
        on_w = pred[:, :3] + (1 - pred[:, 3:]) * white
        tgt_w = target[:, :3] + (1 - target[:, 3:]) * white
        mse = float(((on_w - tgt_w) ** 2).mean())
        return float(10 * np.log10(1.0 / max(mse, 1e-10)))

    active = list(range(len(views)))
    scores: dict[int, float] = {}
    flags = [p.requires_grad for p in run.decoder.parameters()]
    with run._lock:  # the decoder is shared with renders and inversions (TrainedRun's own lock)
        try:
            for p in run.decoder.parameters():
                p.requires_grad_(False)
            for step in range(steps):
                if step == steps // 3:
                    scores.update({i: psnr_of(i) for i in active})
                    active = sorted(active, key=lambda i: -scores[i])[:keep]
                for g in opt.param_groups:  # as the engine's inversion: decay to a tenth
                    g["lr"] = cfg.inversion_lr * 0.1 ** (step / steps)
                batch = []
                for i in active:
                    o, d, t0, t1, idx = pose_rays[i]
                    pick = torch.randint(0, len(idx), (rays_per_pose,), generator=gen, device=dev)
                    batch.append((o[pick], d[pick], t0[pick], t1[pick], target[idx[pick]],
                                  torch.full((rays_per_pose,), i, device=dev)))
                o, d, t0, t1, tgt, who = (torch.cat(x) for x in zip(*batch, strict=True))
                z = codes[who]
                with torch.enable_grad():
                    rgb, alpha = render_rays(run.decoder, o, d, t0, t1, z[:, :sd], z[:, sd:], cfg.samples_per_ray,
                                             gen)
                    loss = (((rgb - tgt[:, :3]) ** 2).mean() + cfg.alpha_weight * ((alpha - tgt[:, 3]) ** 2).mean()
                            + cfg.code_reg * (codes[active] ** 2).sum(-1).mean())
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                opt.step()
                if progress is not None and step % 10 == 0:
                    progress(step / steps, f"fitting the picture: step {step}/{steps}")
            scores.update({i: psnr_of(i) for i in active})
        finally:
            for p, f in zip(run.decoder.parameters(), flags, strict=True):
                p.requires_grad_(f)
    z = codes.detach().cpu().numpy()
    out = [{"view": i, "psnr": scores[i], "shape": z[i, :sd].copy(), "texture": z[i, sd:].copy(),
            "refined": i in active} for i in range(len(views))]
    return sorted(out, key=lambda r: (-int(r["refined"]), -r["psnr"]))


METHODS = ("auto", "feature", "decoder")
#: Re-framing of a picture for the feature: the object's larger side spans this much of the image (captured views:
#: median 0.70 on Scopia, 0.78 on the sample library; 0.70-0.80 score alike) at the size the library's views were
#: captured (bench libraries: 64 px; the backbone then upsamples it like a captured view: re-framed straight to the
#: backbone's 160 px the picture is too sharp and finds its asset 17 points less often on Scopia).
FEATURE_FILL = 0.75
FEATURE_VIEW_SIZE = 64


def picture_feature(rgba: np.ndarray) -> np.ndarray:
    """The pretrained feature ``[1280]`` (head average) of one straight-RGBA picture ``[S, S, 4]``, prepared exactly as
    a captured view is (:func:`backend.features.multiview.views_on_white`: on white, bilinear to the backbone's size,
    [-1, 1]). Raises :class:`LibraryError` when the backbone cannot load."""
    import torch

    from backend.features import DEFAULT_SPEC, FeatureError, load_backbone
    from backend.features.multiview import images_on_white

    try:
        net = load_backbone(DEFAULT_SPEC.backbone, DEFAULT_SPEC.input_size)
    except FeatureError as e:
        raise LibraryError(f"cannot answer with the appearance feature: {e}") from None
    x = images_on_white(torch.from_numpy(np.ascontiguousarray(rgba, np.float32))[None], DEFAULT_SPEC.input_size)
    return net(x).features["head_avg"][0].numpy().astype(np.float32)


def stored_features(catalogue: Any, table: CodeTable) -> tuple[np.ndarray | None, str]:
    """``(vectors [N, D], "")`` of the table's assets from the catalogue's appearance table, or ``(None, why not)``."""
    if catalogue is None:
        return None, "no catalogue given"
    from backend.features.library import table_appearance

    vectors = table_appearance(catalogue, table)
    if vectors is None:
        return None, "some assets have no stored appearance feature; `asset2vec index` computes them"
    return vectors, ""


def feature_neighbours(table: CodeTable, stored: np.ndarray, query: np.ndarray, k: int) -> list[Neighbour]:
    """The ``k`` listed assets whose stored feature is nearest to one picture's ``query [C]``: cosine distance of
    ``[query, query]`` to the stored mean+max over views ``[N, 2C]`` (of ``query`` when ``[N, C]``). The picture
    stands for both its mean and its max over views; measured better than the mean half alone on Scopia and the
    sample library (docs/quality_descriptor.md)."""
    c = len(query)
    if stored.ndim != 2 or stored.shape[1] not in (c, 2 * c):
        raise LibraryError(f"the stored appearance features have {stored.shape[-1]} numbers, the picture's {c}; "
                           "run `asset2vec index` again")
    q = np.tile(np.asarray(query, np.float32), stored.shape[1] // c)
    q = q / max(float(np.linalg.norm(q)), 1e-12)
    dist = 1.0 - (stored / np.maximum(np.linalg.norm(stored, axis=1, keepdims=True), 1e-12)) @ q
    fams = table.families or [""] * len(table)
    listed = np.array([is_listed(n, f) for n, f in zip(table.names, fams, strict=True)], bool)
    rows = np.flatnonzero(listed)
    rows = rows[np.argsort(dist[rows], kind="stable")][:k]
    cats = table.categories or [""] * len(table)
    return [Neighbour(name=table.names[r], asset_id=int(table.ids[r]), distance=float(dist[r]), rank=i,
                      family=fams[r], category=cats[r]) for i, r in enumerate(rows)]


def query_image(run: Any, table: CodeTable, path: str | os.PathLike[str], k: int = 10, steps: int | None = None,
                space: str = "both", progress: Any = None, method: str = "auto",
                catalogue: Any = None, view_size: int = FEATURE_VIEW_SIZE) -> dict[str, Any]:
    """Nearest library assets to a picture: ``{"method", "neighbours", ...}``.

    ``method``: ``"feature"`` (the pretrained appearance feature against the catalogue's stored ones: adds
    ``"feature"``), ``"decoder"`` (a code fitted with the frozen decoder: adds ``"view", "psnr", "shape", "texture",
    "poses"``) or ``"auto"``: the feature when ``space`` is ``both`` and every asset has a stored feature in
    ``catalogue``, else the decoder (``"fallback"`` says why). ``view_size``: the library's capture size in pixels
    (the feature's picture is re-framed at it, then upsampled like a captured view).
    """
    if k < 1:
        raise LibraryError(f"k must be at least 1, got {k}")
    if method not in METHODS:
        raise LibraryError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if method != "decoder":
        stored, why = stored_features(catalogue, table) if space == "both" else (
            None, f"the {space} space is one half of the codes; the appearance feature has no shape/texture split")
        if stored is not None:
            from backend.features.library import FEATURE

            rgba = load_query_image(path, view_size, fill=FEATURE_FILL)
            try:
                query = picture_feature(rgba)
            except LibraryError as e:  # the backbone cannot load here: auto answers with the decoder
                if method == "feature":
                    raise
                why = str(e)
            else:
                return {"method": "feature", "feature": FEATURE,
                        "neighbours": feature_neighbours(table, stored, query, k)}
        if method == "feature":
            raise LibraryError(f"cannot answer with the appearance feature: {why}; or use --method decoder")
        fallback = why
    else:
        fallback = ""
    result = _decoder_query(run, table, path, k, steps, space, progress)
    return {"method": "decoder", **({"fallback": fallback} if fallback else {}), **result}


def _decoder_query(run: Any, table: CodeTable, path: str | os.PathLike[str], k: int, steps: int | None, space: str,
                   progress: Any) -> dict[str, Any]:
    size = run.config.train.image_size
    load_query_image(path, size)  # validate before spending time on renders
    rgba = load_query_image(path, size, fill=library_fill(run, table))
    fits = fit_single_view(run, rgba, steps, progress=progress)
    best = fits[0]
    index = SimilarityIndex(table, space)
    neighbours = index.similar_to_code(best["shape"], best["texture"], k=k)
    return {
        "view": best["view"],
        "psnr": float(best["psnr"]),
        "shape": best["shape"].tolist(),
        "texture": best["texture"].tolist(),
        "poses": [{"view": f["view"], "psnr": float(f["psnr"]), "refined": f["refined"]} for f in fits],
        "neighbours": neighbours,
    }


def encode_png(rgba: np.ndarray) -> bytes:
    """Straight RGBA float ``[H, W, 4]`` -> PNG bytes (for tests and debugging the keyed picture)."""
    buf = io.BytesIO()
    Image.fromarray((np.clip(rgba, 0, 1) * 255 + 0.5).astype(np.uint8), "RGBA").save(buf, format="PNG")
    return buf.getvalue()
