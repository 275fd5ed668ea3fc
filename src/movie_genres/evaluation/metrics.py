"""Multi-label metrics (scikit-learn), per-genre thresholds and the constant baselines.

Macro averages and mAP run over the *evaluated* genres only: genres that are trained and present in the films scored.
Genres never seen (Documentary, News, ...) or excluded for too few positives would otherwise add meaningless zeros.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, precision_recall_fscore_support, precision_score, recall_score
from sklearn.model_selection import KFold

METRIC_KEYS = ("micro_f1", "macro_f1", "weighted_f1", "samples_f1", "micro_precision", "micro_recall", "map_macro")


def decide(probs: np.ndarray, thresholds: np.ndarray | float, min_one: bool = True, allowed: np.ndarray | None = None,
           rank: np.ndarray | None = None) -> np.ndarray:
    """Turn probabilities into 0/1 decisions; with ``min_one`` every film gets at least its most likely allowed genre
    (most likely by ``rank`` where given: the calibrated probabilities, which answers report).

    Example:
        >>> decide(np.array([[0.2, 0.4]]), 0.5).tolist()
        [[0, 1]]
    """
    probs = np.asarray(probs, dtype=np.float64)
    allowed = np.ones(probs.shape[1], dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
    allowed = allowed & (np.broadcast_to(np.asarray(thresholds, dtype=np.float64), allowed.shape) <= 1.0)  # NEVER
    pred = (probs >= thresholds) & allowed
    if min_one and allowed.any():
        empty = ~pred.any(axis=1)
        if empty.any():
            masked = np.where(allowed, probs if rank is None else np.asarray(rank, dtype=np.float64), -np.inf)
            pred[np.flatnonzero(empty), masked[empty].argmax(axis=1)] = True
    return pred.astype(np.int8)


def metric_set(y_true: np.ndarray, y_pred: np.ndarray, y_prob: np.ndarray | None, genres_mask: np.ndarray) -> dict[str, float]:
    """micro/macro/weighted/samples F1, micro precision and recall, and mAP over the genres in ``genres_mask``."""
    yt, yp = y_true[:, genres_mask].astype(int), y_pred[:, genres_mask].astype(int)
    out = {
        "micro_f1": f1_score(yt, yp, average="micro", zero_division=0),
        "macro_f1": f1_score(yt, yp, average="macro", zero_division=0),
        "weighted_f1": f1_score(yt, yp, average="weighted", zero_division=0),
        "samples_f1": f1_score(yt, yp, average="samples", zero_division=0),
        "micro_precision": precision_score(yt, yp, average="micro", zero_division=0),
        "micro_recall": recall_score(yt, yp, average="micro", zero_division=0),
    }
    if y_prob is not None:
        out["map_macro"] = float(average_precision_score(yt, y_prob[:, genres_mask], average="macro"))
    return {k: round(float(v), 4) for k, v in out.items()}


def evaluated_genres(y_true: np.ndarray, trained: np.ndarray) -> np.ndarray:
    """Genres that count in averages: trained and with at least one positive among the films scored."""
    return np.asarray(trained, dtype=bool) & (y_true.sum(axis=0) > 0)


def _best_threshold(y: np.ndarray, p: np.ndarray, grid: np.ndarray) -> float:
    pred = p[:, None] >= grid[None, :]
    tp = (pred & (y[:, None] == 1)).sum(axis=0)
    fp = (pred & (y[:, None] == 0)).sum(axis=0)
    fn = (y == 1).sum() - tp
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    # Among ties take the middle one: more robust than the first on small validation sets.
    best = np.flatnonzero(f1 == f1.max())
    return float(grid[best[len(best) // 2]])


NEVER = 2.0  # the threshold of a label that is never decided (no probability reaches it)


def parse_objective(objective: str) -> tuple[str, float | None]:
    """``"micro"`` / ``"per_genre"`` (F1), ``"precision:0.9"`` or ``"recall:0.8"`` -> (kind, target).

    Example:
        >>> parse_objective("precision:0.9"), parse_objective("micro")
        (('precision', 0.9), ('micro', None))
    """
    kind, _, value = str(objective).partition(":")
    if kind in ("precision", "recall"):
        try:
            target = float(value)
        except ValueError:
            raise ValueError(f"threshold {objective!r}: expected {kind}:<a number between 0 and 1>") from None
        if not 0 < target <= 1:
            raise ValueError(f"threshold {objective!r}: the target must be in (0, 1]")
        return kind, target
    if kind in ("micro", "per_genre") and not value:
        return kind, None
    raise ValueError(f"unknown threshold objective {objective!r} (micro, per_genre, precision:P or recall:R)")


def _target_thresholds(y_true, y_prob, active, out, kind: str, target: float) -> np.ndarray:
    """Per label: the lowest threshold whose precision reaches ``target`` (``precision``), or the highest whose
    recall still does (``recall``); a label that cannot reach it gets :data:`NEVER`."""
    grid = np.round(np.arange(0.01, 1.0, 0.005), 3)
    for g in np.flatnonzero(active):
        pred = y_prob[:, g, None] >= grid[None, :]
        tp = (pred & y_true[:, g, None]).sum(axis=0)
        fp = (pred & ~y_true[:, g, None]).sum(axis=0)
        if kind == "precision":
            ok = np.flatnonzero((tp + fp > 0) & (tp >= target * np.maximum(tp + fp, 1)))
            out[g] = grid[ok[0]] if len(ok) else NEVER
        else:
            ok = np.flatnonzero(tp >= target * y_true[:, g].sum())
            out[g] = grid[ok[-1]] if len(ok) else NEVER
    return out


def expected_rates(y_true, y_prob, trained, objective: str = "micro", min_one: bool = True, folds: int = 5, seed: int = 0,
                   rank=None) -> dict:
    """Per label, the precision and recall to expect at thresholds tuned by ``objective``: cross-fitted on the
    validation films (each fold scored with thresholds tuned on the others), as ``metrics.json``'s tuned numbers are."""
    y_true = np.asarray(y_true).astype(np.int8)
    pred = cross_fitted_decisions(y_true, y_prob, trained, min_one, folds, seed, objective, rank)
    p, r, _, s = precision_recall_fscore_support(y_true, pred, average=None, zero_division=0)
    return {"precision": [round(float(v), 4) for v in p], "recall": [round(float(v), 4) for v in r],
            "support": [int(v) for v in s]}


def tune_thresholds(y_true: np.ndarray, y_prob: np.ndarray, trained: np.ndarray, objective: str = "micro", passes: int = 3) -> np.ndarray:
    """Per-genre thresholds; untrained genres get 1.0 (never decided).

    ``objective="micro"`` (default) maximises micro-F1 over all genres by coordinate ascent: starting from the best
    single threshold, each genre's threshold is set to the value that maximises the *overall* micro-F1 with the others
    fixed, for a few passes. A weak genre then gets a high threshold instead of being guessed for every film, which
    per-genre F1 maximisation does (it floods weak models with false positives). ``objective="per_genre"`` maximises
    each genre's own F1.

    Example:
        >>> tune_thresholds(np.array([[1], [0]]), np.array([[0.3], [0.1]]), np.array([True])).round(2).tolist()
        [0.21]
    """
    grid = np.round(np.arange(0.02, 0.96, 0.01), 2)
    y_true = np.asarray(y_true).astype(bool)
    trained = np.asarray(trained, dtype=bool)
    active = trained & (y_true.sum(axis=0) > 0)
    out = np.full(y_true.shape[1], 0.5, dtype=np.float64)
    out[~trained] = 1.0
    kind, target = parse_objective(objective)
    if kind in ("precision", "recall"):
        out[trained & ~active] = NEVER  # no validation film carries it: no precision or recall to reach
        return _target_thresholds(y_true, np.asarray(y_prob), active, out, kind, target)
    if objective == "per_genre":
        for g in np.flatnonzero(active):
            out[g] = _best_threshold(y_true[:, g], y_prob[:, g], grid)
        return out
    if objective != "micro":
        raise ValueError(f"unknown threshold objective '{objective}' (micro or per_genre)")
    cols = np.flatnonzero(active)
    if not len(cols):
        return out
    yt, yp = y_true[:, cols], y_prob[:, cols]
    # counts per (genre, grid threshold)
    pred = yp[:, :, None] >= grid[None, None, :]
    tp = (pred & yt[:, :, None]).sum(axis=0)
    fp = (pred & ~yt[:, :, None]).sum(axis=0)
    fn = yt.sum(axis=0)[:, None] - tp
    # start: the best single threshold for all genres
    tot = 2 * tp.sum(0) / np.maximum(2 * tp.sum(0) + fp.sum(0) + fn.sum(0), 1)
    best = np.flatnonzero(tot == tot.max())
    k = np.full(len(cols), best[len(best) // 2])
    for _ in range(passes):
        changed = False
        for j in range(len(cols)):
            others = np.arange(len(cols)) != j
            TP, FP, FN = tp[others, k[others]].sum(), fp[others, k[others]].sum(), fn[others, k[others]].sum()
            f1 = 2 * (TP + tp[j]) / np.maximum(2 * (TP + tp[j]) + FP + fp[j] + FN + fn[j], 1)
            cand = np.flatnonzero(f1 >= f1.max() - 1e-12)
            new = cand[len(cand) // 2]
            if f1[new] > f1[k[j]] + 1e-12:
                k[j], changed = new, True
        if not changed:
            break
    out[cols] = grid[k]
    return out


def cross_fitted_decisions(y_true, y_prob, trained, min_one=True, folds=5, seed=0, objective="micro", rank=None) -> np.ndarray:
    """Honest tuned-threshold decisions on the validation films: thresholds for each fold are tuned on the other folds,
    so no film is scored with thresholds that saw its own label."""
    pred = np.zeros_like(y_true, dtype=np.int8)
    n = len(y_true)
    if n < folds * 2:
        return decide(y_prob, tune_thresholds(y_true, y_prob, trained, objective), min_one, trained, rank)
    for fit_idx, score_idx in KFold(folds, shuffle=True, random_state=seed).split(np.arange(n)):
        thr = tune_thresholds(y_true[fit_idx], y_prob[fit_idx], trained, objective)
        pred[score_idx] = decide(y_prob[score_idx], thr, min_one, trained, None if rank is None else rank[score_idx])
    return pred


def per_genre_table(genres, y_true, y_pred, y_prob, thresholds) -> dict[str, dict[str, float]]:
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    out = {}
    for g, name in enumerate(genres):
        ap = float(average_precision_score(y_true[:, g], y_prob[:, g])) if y_true[:, g].sum() else None
        out[name] = {
            "precision": round(float(p[g]), 4),
            "recall": round(float(r[g]), 4),
            "f1": round(float(f[g]), 4),
            "support": int(s[g]),
            "ap": None if ap is None else round(ap, 4),
            "threshold": round(float(thresholds[g]), 3),
        }
    return out


def baselines(genres: list[str], y_true: np.ndarray, mask: np.ndarray) -> dict[str, dict[str, float]]:
    """The constant answers 'always the most common label' and 'always the two most common' on the same films
    (in the shared IMDb data: "always Drama" and "always Drama + Comedy")."""
    counts = np.where(mask, y_true.sum(axis=0), -1)
    order = [j for j in np.argsort(-counts, kind="stable") if mask[j]][:2]
    out = {}
    for k in range(1, len(order) + 1):
        pred = np.zeros_like(y_true, dtype=np.int8)
        pred[:, order[:k]] = 1
        out["always " + " + ".join(genres[j] for j in order[:k])] = metric_set(y_true, pred, pred.astype(float), mask)
    return out


def full_metrics(genres, y_true, y_prob, thresholds, trained, min_one=True, cross_fit=True, objective="micro", rank=None) -> dict:
    """Everything ``metrics.json`` holds about one set of scored films.

    ``tuned`` uses the stored thresholds unless ``cross_fit`` (validation of a fresh run), where thresholds are
    cross-fitted so the tuned numbers are not inflated by tuning on the same films.
    """
    y_true = np.asarray(y_true).astype(np.int8)
    mask = evaluated_genres(y_true, trained)
    tuned_pred = (cross_fitted_decisions(y_true, y_prob, trained, min_one, objective=objective, rank=rank) if cross_fit
                  else decide(y_prob, thresholds, min_one, trained, rank))
    half_pred = decide(y_prob, 0.5, min_one=False, allowed=trained)
    stored_pred = decide(y_prob, thresholds, min_one, trained, rank)
    return {
        "n_films": int(len(y_true)),
        "tuned": metric_set(y_true, tuned_pred, y_prob, mask),
        "at_0_5": metric_set(y_true, half_pred, y_prob, mask),
        "per_genre": per_genre_table(genres, y_true, stored_pred, y_prob, thresholds),
        "baselines": baselines(genres, y_true, mask),
        "evaluated_genres": [g for g, m in zip(genres, mask) if m],
    }
