"""The exploration page: every analysis of :mod:`.explore` / :mod:`.style` as PNG + JSON + one ``index.html``."""

from __future__ import annotations

import html
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from . import explore, style
from .catalogue import Catalogue, CodeTable
from .tags import tag_status

THUMB_SIZE = 32
RENDER_BATCH = 8
#: Above this many assets the maps show a deterministic stratified sample (:func:`explore.stratified_sample`);
#: the page says how many of how many are shown and ``map_points.csv`` has every asset's coordinates.
MAX_SHOWN = 2000
#: Thumbnails drawn on one map (an even spread of the shown points).
MAP_THUMBNAILS = 400
#: Near-duplicate groups listed on the page (all are in explore.json).
MAX_LISTED_DUPLICATES = 200


def thumbnails(renderer: style.Renderer, cat: Catalogue | None, table: CodeTable,
               size: int = THUMB_SIZE, rows: list[int] | np.ndarray | None = None) -> list[np.ndarray]:
    """One RGBA thumbnail ``[H, W, 4]`` per asset (or per row of ``rows``, in that order): the catalogue's, else a
    decoder render (then cached there). Only the rows asked for are read or rendered."""
    want = list(range(len(table))) if rows is None else [int(r) for r in rows]
    out: list[np.ndarray | None] = [None] * len(want)
    if cat is not None:
        for i, r in enumerate(want):
            png = cat.thumbnail(int(table.ids[r]))
            if png:
                out[i] = style.decode_png(png)
    missing = [i for i, t in enumerate(out) if t is None]
    for s in tqdm(range(0, len(missing), RENDER_BATCH), desc="thumbnails", unit="batch", disable=not missing):
        idx = missing[s:s + RENDER_BATCH]
        rr = [want[i] for i in idx]
        imgs = style.render_codes(renderer, table.shape[rr], table.texture[rr], size)
        for i, r, img in zip(idx, rr, imgs, strict=True):
            out[i] = img
            if cat is not None:
                cat.set_thumbnail(int(table.ids[r]), style.png_bytes(img))
    return [o for o in out if o is not None]


def explore_library(
    renderer: style.Renderer,
    cat: Catalogue | None,
    table: CodeTable,
    out: str | os.PathLike[str],
    method: str = "pca",
    image_size: int = 48,
    progress: Callable[[str], None] | None = None,
    max_shown: int = MAX_SHOWN,
) -> dict[str, Any]:
    """Write PCA strips, maps with clusters, sparse regions, duplicates and a style grid into ``out``.

    Returns the summary also written to ``out/explore.json``; ``out/index.html`` shows it all.

    Scale: everything is linear (or N log N) in the number of assets except near-duplicates (exact, blocked,
    memory bounded). Above ``max_shown`` assets each map draws a deterministic stratified sample of ``max_shown``
    points (grid cells of that map x asset category, :func:`explore.stratified_sample`) over every asset as grey
    dots, with thumbnails for at most :data:`MAP_THUMBNAILS` of them; clusters are fitted on a seeded sample
    and assigned to every asset; ``explore.json`` and the page stay bounded (cluster member lists and every
    asset's coordinates go to ``map_points.csv``, no images). t-SNE above the cap maps the sample only.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda msg: None)
    files: list[dict[str, str]] = []
    n = len(table)
    data: dict[str, Any] = {"model_id": table.model_id, "assets": n}
    # Nothing here needs tags; the page says how tags start when there are none.
    data["tags"] = tag_status(cat) if cat is not None else None
    data["catalogue_size"] = cat.size_report() if cat is not None else None
    sampled = n > max_shown

    say("PCA of each half")
    pcas = {h: explore.pca_summary(getattr(table, h), 8) for h in ("shape", "texture")}
    data["pca"] = {h: {"explained_variance_ratio": s["explained_variance_ratio"], "sigma": s["sigma"]}
                   for h, s in pcas.items()}
    explore.plot_explained_variance(pcas, out / "pca_variance.png")
    files.append({"png": "pca_variance.png", "title": "Explained variance per half",
                  "caption": "How many directions each half really uses."})
    for half, s in pcas.items():
        strips = style.pca_strips(renderer, table, half, s, n_dirs=min(4, len(s["directions"])),
                                  image_size=image_size)
        name = f"pca_{half}_strips.png"
        style.save_grid(strips, out / name, col_labels=["-2 sd", "-1 sd", "mean", "+1 sd", "+2 sd"],
                        row_labels=[f"PC{i + 1}" for i in range(len(strips))], row_label_px=30)
        files.append({"png": name, "title": f"Principal directions of the {half} half",
                      "caption": f"Each row: mean code + t·sd·direction on the {half} half, other half at its mean."})

    central: list[str] = table.names[:5]
    categories = table.categories if any(table.categories) else None
    points: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    thumb_cache: dict[int, np.ndarray] = {}
    shown_counts = {}
    for space in ("shape", "texture"):
        say(f"{space}-space map and clusters")
        feats = explore.space_features(table, space)
        pca_coords = explore.embed_2d(feats, "pca") if sampled or method == "pca" else None
        shown = explore.stratified_sample(pca_coords, max_shown, categories) if sampled else np.arange(n)
        coords = pca_coords if method == "pca" else explore.embed_2d(feats[shown] if sampled else feats, method)
        if method != "pca" and sampled:  # t-SNE of the sample only (not linear in N): no background, no CSV x/y
            full = None
        else:
            full, coords = coords, coords[shown]
        cl = explore.clusters(feats, table.names)
        lab = np.asarray(cl["labels"])
        labels[space] = lab
        if full is not None:
            points[space] = full
        shown_counts[space] = len(shown)
        data[f"clusters_{space}"] = {k: v for k, v in cl.items() if k != "labels"}
        if sampled:
            for c in data[f"clusters_{space}"]["clusters"]:
                c.pop("members", None)  # every asset's cluster is in map_points.csv
        # Thumbnails for an even spread of the shown points (all of them when there are few).
        tsel = explore.stratified_sample(coords, MAP_THUMBNAILS) if len(shown) > MAP_THUMBNAILS else np.arange(len(shown))
        need = [int(shown[i]) for i in tsel if int(shown[i]) not in thumb_cache]
        for r, img in zip(need, thumbnails(renderer, cat, table, rows=need), strict=True):
            thumb_cache[r] = img
        chosen = set(tsel.tolist())
        thumbs = [thumb_cache.get(int(shown[i])) if i in chosen else None for i in range(len(shown))]
        explore.plot_map(coords, [table.names[i] for i in shown], out / f"map_{space}.png", lab[shown].tolist(),
                         [c["name"] for c in cl["clusters"]], thumbs, title=f"{space} space ({method})",
                         max_thumbnails=MAP_THUMBNAILS,
                         background=full if (sampled and full is not None) else None)
        shown_note = (f" Shows {len(shown):,} of {n:,} assets (a stratified sample: every map cell and category "
                      "appears" + ("; grey dots are all assets; every asset's coordinates are in map_points.csv)."
                                   if full is not None else "; t-SNE of the sample only).")
                      if sampled else "")
        files.append({"png": f"map_{space}.png", "title": f"Map of {space} space",
                      "caption": f"{cl['k']} clusters (silhouette {cl['silhouette'] or 0:.2f}), "
                                 "each named after its most central asset (its most typical members are "
                                 "listed under Clusters)." + shown_note})
        if space == "shape":
            central = [c["name"] for c in cl["clusters"]][:5]
    data["shown"] = {"assets": max(shown_counts.values()), "of": n, "cap": max_shown, "sampled": sampled,
                     "sampling": "stratified by 2-D map cell and category, seeded" if sampled
                     else "all assets", "per_map": shown_counts}
    _write_points(out / "map_points.csv", table, points, labels)

    if n >= 4:
        say("sparse regions")
        regions = explore.sparse_regions(explore.space_features(table, "both"), table.names, n_regions=5)
        data["sparse_regions"] = regions
        if regions:
            mixed = [explore.mix_codes(table, r["weights"]) for r in regions]
            imgs = style.render_codes(renderer, np.stack([m[0] for m in mixed]), np.stack([m[1] for m in mixed]),
                                      image_size)
            style.save_grid(imgs[None], out / "sparse.png", col_labels=[f"#{i + 1}" for i in range(len(regions))])
            files.append({"png": "sparse.png", "title": "Sparse regions: where the library needs assets",
                          "caption": "; ".join(f"#{i + 1}: {r['score']:.1f}× the usual gap, near "
                                               f"{', '.join(r['nearest'][:3])}" for i, r in enumerate(regions))})

    say("near-duplicates")
    data["duplicates"] = explore.near_duplicates(table)

    say("style-transfer grid")
    grid = style.style_grid(renderer, table, central, image_size=image_size)
    style.save_grid(grid, out / "style_grid.png", col_labels=central, row_labels=central, row_label_px=90)
    files.append({"png": "style_grid.png", "title": "Shape (rows) × texture (columns)",
                  "caption": "Decoder renders mixing the shape of one asset with the texture of another."})

    data["files"] = [f["png"] for f in files] + ["map_points.csv", "explore.json", "index.html"]
    _write(out / "explore.json", json.dumps(data, indent=1))
    typical = {n for sp in ("shape", "texture") for c in data[f"clusters_{sp}"]["clusters"] for n in c["typical"]}
    rows = [table.index_of(t) for t in sorted(typical)]
    write_index_html(out, files, data, {table.names[r]: style.png_bytes(img)
                                        for r, img in zip(rows, thumbnails(renderer, cat, table, rows=rows),
                                                          strict=True)})
    return data


def _write_points(path: Path, table: CodeTable, points: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> Path:
    """Every asset's map coordinates and cluster per space (no images): the full data behind a sampled map."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    spaces = [sp for sp in ("shape", "texture") if sp in labels]
    header = ["name", "category"]
    for sp in spaces:
        header += ([f"{sp}_x", f"{sp}_y"] if sp in points else []) + [f"{sp}_cluster"]
    w.writerow(header)
    cats = table.categories or [""] * len(table)
    for i, name in enumerate(table.names):
        row: list[Any] = [name, cats[i]]
        for sp in spaces:
            if sp in points:
                row += [f"{points[sp][i, 0]:.5g}", f"{points[sp][i, 1]:.5g}"]
            row.append(int(labels[sp][i]))
        w.writerow(row)
    return _write(path, buf.getvalue())


def write_index_html(out: Path, files: list[dict[str, str]], data: dict[str, Any],
                     thumbs: dict[str, bytes] | None = None) -> Path:
    """A single static page: the tag status, every PNG with its caption, clusters with their most typical
    assets (``thumbs``: PNG bytes by asset name, shown inline) and duplicates as a list. Its size does not grow
    with the library: at most :data:`MAX_LISTED_DUPLICATES` duplicate groups are listed (all in explore.json)."""
    shown = data.get("shown") or {}
    sample_note = ""
    if shown.get("sampled"):
        sample_note = (f"<p class='shown'><b>The maps show {shown['assets']:,} of {shown['of']:,} assets</b> "
                       f"(a deterministic sample, {html.escape(str(shown['sampling']))}; at most {shown['cap']:,} "
                       "shown). Every asset's map coordinates and cluster: "
                       "<a href='map_points.csv'>map_points.csv</a>.</p>")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Asset2Vec library exploration</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}img{max-width:100%;"
        "border:1px solid #ccc}figure{margin:2em 0}</style></head><body>",
        f"<h1>Library exploration</h1><p>Model <code>{html.escape(str(data.get('model_id')))}</code>, "
        f"{data.get('assets')} assets. Data: <a href='explore.json'>explore.json</a>.</p>",
        sample_note,
        _size_html(data.get("catalogue_size")),
    ]
    parts.append(_tags_html(data.get("tags")))
    for f in files:
        parts.append(f"<figure><h2>{html.escape(f['title'])}</h2><img src='{html.escape(f['png'])}' alt=''>"
                     f"<figcaption>{html.escape(f['caption'])}</figcaption></figure>")
    parts.append(_clusters_html(data, thumbs or {}))
    dups = data.get("duplicates") or []
    parts.append("<h2>Near-duplicates</h2>")
    listed = dups[:MAX_LISTED_DUPLICATES]
    more = (f"<p>... and {len(dups) - len(listed):,} more groups (all in explore.json).</p>"
            if len(dups) > len(listed) else "")
    parts.append("<ul>" + "".join(f"<li>{_group_html(g['assets'])}</li>" for g in listed) + "</ul>" + more
                 if dups else "<p>None found.</p>")
    parts.append("</body></html>")
    return _write(out / "index.html", "\n".join(parts))


def _size_html(size: dict[str, Any] | None) -> str:
    """One line: the catalogue's size and what an asset costs in it."""
    if not size or not size.get("assets"):
        return ""
    per = ", ".join(f"{html.escape(k)} {v / 1024:.1f} KiB" for k, v in size.get("parts_per_asset", {}).items())
    return (f"<p class='catalogue-size'>Catalogue: {size['db_bytes'] / 2**20:.1f} MiB, "
            f"{size['bytes_per_asset'] / 1024:.1f} KiB per asset ({per}).</p>")


def _group_html(assets: list[str], limit: int = 20) -> str:
    """One duplicate group: its first ``limit`` names and how many more."""
    extra = f" (+{len(assets) - limit} more)" if len(assets) > limit else ""
    return html.escape(" = ".join(assets[:limit])) + extra


def _tags_html(status: dict[str, Any] | None) -> str:
    """The tag status: how tags start when there are none, else how many assets are tagged with what."""
    if status is None:
        return ""
    if status.get("message"):
        return (f"<div class='tags-help' style='background:#fff6d5;border:1px solid #e0c060;padding:0.6em 1em'>"
                f"<h2>Tags</h2><p>{html.escape(status['message'])}</p></div>")
    tags = ", ".join(f"{html.escape(t)} ({n})" for t, n in status.get("tags", {}).items())
    return f"<h2>Tags</h2><p>{status.get('tagged_assets', 0)} assets have artist tags: {tags}.</p>"


def _clusters_html(data: dict[str, Any], thumbs: dict[str, bytes]) -> str:
    """Each space's clusters: name, size and the most typical members (with thumbnails when given)."""
    import base64

    def asset(name: str) -> str:
        img = ""
        if name in thumbs:
            src = "data:image/png;base64," + base64.b64encode(thumbs[name]).decode("ascii")
            img = f"<img src='{src}' alt='' style='width:48px;border:none;vertical-align:middle'> "
        return f"<span style='margin-right:1em'>{img}{html.escape(name)}</span>"

    parts = []
    for space in ("shape", "texture"):
        cl = data.get(f"clusters_{space}")
        if not cl:
            continue
        parts.append(f"<h2>Clusters in {space} space</h2><p>Named after their most typical asset (closest to the "
                     "cluster centre); the most typical members are shown.</p><table>")
        for c in cl["clusters"]:
            parts.append(f"<tr><td><b>{html.escape(c['name'])}</b><br>{c['size']} assets</td>"
                         f"<td>{''.join(asset(n) for n in c.get('typical', []))}</td></tr>")
        parts.append("</table>")
    return "\n".join(parts)


def _write(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
