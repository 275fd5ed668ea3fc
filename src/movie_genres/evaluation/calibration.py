"""Probabilities that mean what they say: per-label Platt scaling, cross-fitted on the validation split, kept only
for the labels where it lowers the expected calibration error (ECE).

Platt scaling maps a label's probability ``p`` to ``sigmoid(a * logit(p) + b)`` with ``a > 0``: strictly increasing,
so a film's labels keep their order within each label, average precision is unchanged, and a decision
``p >= threshold`` is the same as ``calibrated(p) >= calibrated(threshold)``. The predictor decides on the model's own
probabilities and reports the calibrated ones (with the thresholds mapped the same way).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = (rng.random((500, 1)) < 0.5).astype(int)
    >>> p = np.clip(0.5 + (y - 0.5) * 0.3 + rng.normal(0, 0.1, y.shape), 0.01, 0.99)  # under-confident
    >>> fit = fit_calibration(["A"], y, p, np.array([True]))
    >>> fit["ece_after"] < fit["ece_before"]
    True
"""
from __future__ import annotations

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold

BINS = 10
MIN_EACH = 20  # a label is calibrated only with at least this many validation films with it and without it
MAX_SLOPE = 10.0  # a steeper map would squash a label's probabilities to 0 or 1 (a small, separable validation split)
EPS = 1e-6  # the model's probabilities are read as logits clipped here
Z_MAX = 30.0  # calibrated logits are kept within +-30, so a calibrated probability turns back into the model's exactly

def ece(y_true: np.ndarray, y_prob: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error over all the (film, label) entries given: the mean |fraction positive - mean
    probability| over equal-width probability bins, weighted by the entries in each bin."""
    y, p = np.asarray(y_true, dtype=float).ravel(), np.asarray(y_prob, dtype=float).ravel()
    if not len(y):
        return 0.0
    idx = np.clip((p * bins).astype(int), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.sum() * abs(y[sel].mean() - p[sel].mean())
    return float(total / len(y))


def reliability(y_true: np.ndarray, y_prob: np.ndarray, bins: int = BINS) -> dict:
    """The reliability diagram's points (scikit-learn's ``calibration_curve``): mean probability and fraction
    positive per non-empty bin."""
    frac, mean = calibration_curve(np.asarray(y_true).ravel(), np.asarray(y_prob).ravel(), n_bins=bins, strategy="uniform")
    return {"mean_probability": [round(float(v), 4) for v in mean], "fraction_positive": [round(float(v), 4) for v in frac]}


def _logit(p: np.ndarray, eps: float = EPS) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    return np.log(p) - np.log1p(-p)


def _fit_platt(y: np.ndarray, p: np.ndarray) -> tuple[float, float] | None:
    if min(int(y.sum()), int(len(y) - y.sum())) < 2:
        return None
    lr = LogisticRegression(max_iter=1000).fit(_logit(p)[:, None], y)
    a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    # only increasing maps keep the label's order (and its decisions); none so steep that it saturates
    return (a, b) if 1e-3 < a <= MAX_SLOPE else None


def apply_platt(p: np.ndarray, a: float, b: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(a * _logit(p) + b, -Z_MAX, Z_MAX)))


def fit_calibration(genres: list[str], y_true: np.ndarray, y_prob: np.ndarray, trained: np.ndarray, folds: int = 5,
                    seed: int = 0) -> dict:
    """Per learned label: Platt scaling cross-fitted over ``folds`` of the validation films; kept where it lowers
    that label's cross-fitted ECE. Returns what ``calibration.json`` holds: the kept ``(a, b)`` per label (None:
    left as the model gives it), and the pooled ECE and reliability points before and after (cross-fitted)."""
    y, p = np.asarray(y_true, dtype=int), np.asarray(y_prob, dtype=np.float64)
    after = p.copy()
    params: dict[str, list[float] | None] = {g: None for g in genres}
    n = len(y)
    splits = list(KFold(folds, shuffle=True, random_state=seed).split(np.arange(n))) if n >= 2 * folds else []
    for j in np.flatnonzero(np.asarray(trained, dtype=bool)):
        if not splits or min(int(y[:, j].sum()), int(n - y[:, j].sum())) < MIN_EACH:
            continue
        crossed = p[:, j].copy()
        for fit_idx, score_idx in splits:
            ab = _fit_platt(y[fit_idx, j], p[fit_idx, j])
            if ab is not None:
                crossed[score_idx] = apply_platt(p[score_idx, j], *ab)
        whole = _fit_platt(y[:, j], p[:, j])
        if whole is not None and ece(y[:, j], crossed) < ece(y[:, j], p[:, j]):
            params[genres[j]] = [round(whole[0], 6), round(whole[1], 6)]
            after[:, j] = crossed
    mask = np.asarray(trained, dtype=bool)
    return {
        "method": "platt",
        "labels": params,
        "ece_before": round(ece(y[:, mask], p[:, mask]), 4),
        "ece_after": round(ece(y[:, mask], after[:, mask]), 4),
        "reliability_before": reliability(y[:, mask], p[:, mask]),
        "reliability_after": reliability(y[:, mask], after[:, mask]),
        "note": "cross-fitted on 5 folds of the validation films; kept per label where it lowers that label's ECE",
    }


class Calibrator:
    """A run's calibration (``fit_calibration``'s dict, or None for none) applied to probabilities (n, labels)."""

    def __init__(self, genres: list[str], spec: dict | None):
        labels = (spec or {}).get("labels", {})
        self.params = [labels.get(g) for g in genres]
        self.active = any(ab is not None for ab in self.params)

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        if not self.active:
            return probs
        out = np.array(probs, dtype=np.float64, copy=True)
        for j, ab in enumerate(self.params):
            if ab is not None:
                col = out[..., j]
                ok = ~np.isnan(col)
                col[ok] = apply_platt(col[ok], *ab)
        return out.astype(np.asarray(probs).dtype, copy=False)

    def thresholds(self, thresholds: np.ndarray) -> np.ndarray:
        """Thresholds mapped as the probabilities are (a threshold over 1, "never", stays as it is)."""
        thr = np.asarray(thresholds, dtype=np.float64)
        if not self.active:
            return thr
        out = thr.copy()
        for j, ab in enumerate(self.params):
            if ab is not None and thr[j] <= 1.0:
                out[j] = float(apply_platt(np.array([thr[j]]), *ab)[0])
        return out

    def invert(self, probs: np.ndarray) -> np.ndarray:
        """Calibrated probabilities back to the model's (the predictor decides on those)."""
        if not self.active:
            return probs
        out = np.array(probs, dtype=np.float64, copy=True)
        for j, ab in enumerate(self.params):
            if ab is not None:
                a, b = ab
                out[..., j] = 1.0 / (1.0 + np.exp(-((_logit(out[..., j], 1e-15) - b) / a)))
        return out
