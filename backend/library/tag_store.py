"""Tag model files that hold only data: arrays + JSON in one ``.npz``, read without unpickling (issue 18).

A tag model used to be a joblib pickle, so a planted file in a run or home folder ran code when it was
loaded. Every trained tag classifier is linear (a logistic regression, optionally after a standard scaler,
optionally averaged over the sigmoid-calibrated folds of :class:`~sklearn.calibration.CalibratedClassifierCV`),
so its probabilities are fully given by a few arrays per fold ("member"):

``p = mean over members of s(z)``, ``z = ((x - mean) / scale) @ coef + intercept``, ``s(z) = expit(z)``
uncalibrated, ``expit(-(a z + b))`` calibrated (sklearn's sigmoid calibration).

The file is a zip written by :func:`numpy.savez_compressed` (to a file object: the name is kept as given)
and read with ``allow_pickle=False``; anything that is not such a zip (an old joblib pickle, a damaged
file) is refused before any byte of it is interpreted.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LibraryError

#: The version of the data-only format (1 was the joblib pickle, no longer read).
FORMAT_VERSION = 2
#: Said whenever a tag model file cannot be used; the caller adds the path.
RETRAIN_HINT = "retrain the tags: asset2vec tags train --run RUN_DIR"
_ARRAYS = ("member_tag", "mean", "scale", "coef", "intercept", "sig_a", "sig_b", "calibrated")


@dataclass
class LinearTag:
    """One tag's classifier as arrays (``[M]`` members, ``D`` features); ``predict_proba`` like sklearn's."""

    mean: np.ndarray  # [M, D]
    scale: np.ndarray  # [M, D]
    coef: np.ndarray  # [M, D]
    intercept: np.ndarray  # [M]
    sig_a: np.ndarray  # [M]
    sig_b: np.ndarray  # [M]
    calibrated: np.ndarray  # [M] bool

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``[N, 2]`` probabilities of (not tag, tag)."""
        x = np.asarray(x, np.float64)
        p = np.zeros(len(x))
        for m in range(len(self.intercept)):
            z = ((x - self.mean[m]) / self.scale[m]) @ self.coef[m] + self.intercept[m]
            t = -(self.sig_a[m] * z + self.sig_b[m]) if self.calibrated[m] else z
            p += 1.0 / (1.0 + np.exp(-np.clip(t, -500, 500)))
        p = np.clip(p / len(self.intercept), 0.0, 1.0)
        return np.stack([1.0 - p, p], axis=1)


def _member(pipeline: Any, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``(mean, scale, coef, intercept)`` of a fitted ``[StandardScaler,] LogisticRegression`` pipeline."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    steps = [s for _, s in pipeline.steps] if hasattr(pipeline, "steps") else [pipeline]
    mean, scale = np.zeros(dim), np.ones(dim)
    clf = steps[-1]
    if not isinstance(clf, LogisticRegression) or len(steps) > 2:
        raise LibraryError(f"cannot store a {type(clf).__name__} tag classifier as data")
    if len(steps) == 2:
        if not isinstance(steps[0], StandardScaler):
            raise LibraryError(f"cannot store a {type(steps[0]).__name__} step of a tag classifier as data")
        mean = np.asarray(steps[0].mean_, np.float64) if steps[0].mean_ is not None else mean
        scale = np.asarray(steps[0].scale_, np.float64) if steps[0].scale_ is not None else scale
    return mean, scale, np.asarray(clf.coef_, np.float64).reshape(-1), float(np.ravel(clf.intercept_)[0])


def to_linear(model: Any) -> LinearTag:
    """A fitted sklearn tag classifier (see :mod:`.tags`) as a :class:`LinearTag` with identical probabilities."""
    from sklearn.calibration import CalibratedClassifierCV

    if isinstance(model, LinearTag):
        return model
    rows: list[tuple[Any, ...]] = []
    if isinstance(model, CalibratedClassifierCV):
        for cc in model.calibrated_classifiers_:
            est = cc.estimator
            dim = int(est.steps[-1][1].coef_.shape[1]) if hasattr(est, "steps") else int(est.coef_.shape[1])
            cal = cc.calibrators[0]
            rows.append((*_member(est, dim), float(cal.a_), float(cal.b_), True))
    else:
        dim = int(model.steps[-1][1].coef_.shape[1]) if hasattr(model, "steps") else int(model.coef_.shape[1])
        rows.append((*_member(model, dim), 0.0, 0.0, False))
    cols = list(zip(*rows, strict=True))
    return LinearTag(np.stack(cols[0]), np.stack(cols[1]), np.stack(cols[2]), np.asarray(cols[3]),
                     np.asarray(cols[4]), np.asarray(cols[5]), np.asarray(cols[6], bool))


def save(path: str | os.PathLike[str], meta: dict[str, Any], classifiers: dict[str, Any]) -> Path:
    """Write ``meta`` (JSON) and the classifiers (arrays) atomically to ``path`` (its name is kept as given)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tags = sorted(classifiers)
    lin = [to_linear(classifiers[t]) for t in tags]
    arrays: dict[str, np.ndarray] = {
        "member_tag": np.concatenate([np.full(len(c.intercept), i, np.int32) for i, c in enumerate(lin)])
        if lin else np.zeros(0, np.int32),
    }
    # Tags may read inputs of different widths (a descriptor model's tags on the codes): the per-feature arrays are
    # padded to the widest (mean 0, scale 1, coefficient 0) and each tag's width is recorded in "dims".
    dims = [int(c.coef.shape[1]) for c in lin]
    width = max(dims, default=0)
    pad = {"mean": 0.0, "scale": 1.0, "coef": 0.0}
    for name in _ARRAYS[1:]:
        parts = [getattr(c, name) for c in lin]
        if name in pad:
            parts = [np.pad(p, ((0, 0), (0, width - p.shape[1])), constant_values=pad[name]) for p in parts]
        arrays[name] = np.concatenate(parts) if parts else np.zeros(0)
    meta = {**meta, "format": FORMAT_VERSION, "tags": tags}
    if len(set(dims)) > 1:
        meta["dims"] = dims
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8)
    # A unique temporary name: a training job, a review answer and an index run may save at once.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, LinearTag]]:
    """``(meta, {tag: LinearTag})`` of a file written by :func:`save`; never unpickles anything.

    An old joblib tag model, a damaged or foreign file raise :class:`LibraryError` saying to retrain.
    """
    path = Path(path)
    if not path.is_file():
        raise LibraryError(f"{path}: no tag model here; train one first (asset2vec tags train)")
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04":  # not a zip: an old pickled (joblib) tag model, or not a tag model at all
        raise LibraryError(f"{path}: not a readable tag model (an old pickled one, or damaged: tag models are "
                           f"stored as data only and pickles are never loaded); {RETRAIN_HINT}")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"].astype(np.uint8)).decode("utf-8"))
            arrays = {name: np.asarray(z[name]) for name in _ARRAYS}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise LibraryError(f"{path}: not a readable tag model ({type(e).__name__}); {RETRAIN_HINT}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION or not isinstance(meta.get("tags"), list):
        raise LibraryError(f"{path}: not an Asset2Vec tag model of format {FORMAT_VERSION}; {RETRAIN_HINT}")
    dims = meta.get("dims")
    if dims is not None and (not isinstance(dims, list) or len(dims) != len(meta["tags"])):
        raise LibraryError(f"{path}: a damaged tag model (dims); {RETRAIN_HINT}")
    out: dict[str, LinearTag] = {}
    for i, tag in enumerate(meta["tags"]):
        sel = arrays["member_tag"] == i
        if not sel.any():
            raise LibraryError(f"{path}: tag {tag!r} has no classifier; {RETRAIN_HINT}")
        parts = [np.asarray(arrays[n][sel], bool if n == "calibrated" else np.float64) for n in _ARRAYS[1:]]
        if dims is not None:  # a tag narrower than the widest: its own width (see save)
            parts[:3] = [p[:, : int(dims[i])] for p in parts[:3]]
        out[str(tag)] = LinearTag(*parts)
    return meta, out
