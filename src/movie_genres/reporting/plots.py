"""Plots of one run folder: learning curves, per-genre confusion matrices, genre co-occurrence, per-genre F1.

Everything is read back from the run folder's files (see docs/ARCHITECTURE.md, "Run folder"), so the plots can be
redrawn at any time with ``write_run_plots(run_dir)``; nothing needs the model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from sklearn.metrics import f1_score, multilabel_confusion_matrix  # noqa: E402

from movie_genres import runs  # noqa: E402
from movie_genres.evaluation.metrics import decide  # noqa: E402
from movie_genres.io import atomic_write  # noqa: E402

DPI = 110
PLOT_NAMES = ("learning_curves.png", "confusion_matrices.png", "cooccurrence.png", "per_genre_f1.png", "thresholds.png",
              "reliability.png")
MAX_LABELS = 25  # labels a per-label plot draws (the most frequent in validation); all of them are in per_label.csv
CURVE_LABELS = 8  # labels drawn with precision-recall and F1-by-threshold curves


# ----------------------------------------------------------------------------------------------- reading a run folder
@dataclass
class RunData:
    """What the report needs from one run folder. Missing optional files leave their field empty."""

    run_dir: Path
    genres: list[str]
    trained: list[bool]
    excluded: list[str]
    thresholds: np.ndarray  # per genre, schema order
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    history: pd.DataFrame | None = None
    ids: list[str] | None = None  # validation Ids, val_predictions.csv order
    y_true: np.ndarray | None = None  # (n, 25) int
    probs: np.ndarray | None = None  # (n, 25) float
    calibration: dict | None = None  # calibration.json (None: the run does not calibrate)
    expected: dict | None = None  # thresholds.json "expected": per label, the validation precision / recall to expect

    @property
    def model_name(self) -> str:
        return str(self.metrics.get("model") or self.config.get("model") or self.run_dir.name)

    @property
    def min_one_genre(self) -> bool:
        return bool(self.config.get("min_one_genre", True))

    @property
    def trained_idx(self) -> np.ndarray:
        return np.flatnonzero(np.asarray(self.trained, dtype=bool))

    def frequent(self, idx, k: int = MAX_LABELS) -> list[int]:
        """The ``k`` of the label indices ``idx`` with the most validation films (ties in schema order)."""
        idx = list(idx)
        support = self.y_true[:, idx].sum(axis=0) if self.y_true is not None and idx else np.zeros(len(idx))
        return [idx[i] for i in np.argsort(-support, kind="stable")[:k]]

    def shown(self, n: int, total: int, what: str = "labels") -> str:
        return "" if n >= total else f" - the {n} most frequent of {total} {what} (all in per_label.csv)"

    def decide(self, thresholds: np.ndarray | float | None = None) -> np.ndarray:
        """0/1 decisions: prob >= threshold for trained genres (plus the top genre when min_one_genre and none passed)."""
        if self.probs is None:
            raise ValueError(f"{self.run_dir}: no val_predictions.csv")
        thr = self.thresholds if thresholds is None else np.broadcast_to(np.asarray(thresholds, float), self.thresholds.shape)
        trained = np.asarray(self.trained, dtype=bool)
        from movie_genres.evaluation.calibration import Calibrator

        rank = Calibrator(self.genres, self.calibration)(self.probs)  # the top label by the reported probabilities
        return decide(self.probs, thr, self.min_one_genre and trained.any(), trained, rank).astype(int)


def load_run(run_dir: str | Path) -> RunData:
    """Read a run folder (through :class:`movie_genres.runs.Run`). genres.json is required; everything else is
    optional (the report says what is missing)."""
    run = runs.Run(run_dir, finished=False)
    if runs.read_genres(run.path, required=False) is None:
        raise FileNotFoundError(f"{run.path} is not a run folder: genres.json is missing")
    genres, trained, excluded = run.genres, [bool(t) for t in run.trained], run.excluded
    metrics = run.metrics(required=False) or {}
    config = runs.read_config(run.path, required=False) or {}

    # thresholds: thresholds.json by genre name, else metrics per_genre threshold, else 0.5
    thr = {g: 0.5 for g in genres}
    for g, pg in (metrics.get("per_genre") or {}).items():
        if isinstance(pg, dict) and pg.get("threshold") is not None:
            thr[g] = float(pg["threshold"])
    tj = runs.read_thresholds(run.path, required=False)
    if tj:
        thr.update({str(g): float(t) for g, t in zip(tj["genres"], tj["thresholds"])})
    thresholds = np.array([thr.get(g, 0.5) for g in genres], dtype=float)
    ids, y_true, probs = run.validation_predictions() or (None, None, None)
    return RunData(run.path, genres, trained, excluded, thresholds, metrics, config, run.history(), ids, y_true, probs,
                   run.calibration(), (tj or {}).get("expected"))


# --------------------------------------------------------------------------------------------------------- plotting
def _save(fig: plt.Figure, path: Path) -> Path:
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
    finally:
        plt.close(fig)
    return path


def _pretty(metric: str) -> str:
    return metric.replace("_", " ")


def plot_learning_curves(history: pd.DataFrame, path: Path, title: str = "") -> Path:
    """One panel per metric (train and its ``val_`` twin). A 1-epoch history shows markers, not an invisible line."""
    x_col = "epoch" if "epoch" in history.columns else None
    x = history[x_col].to_numpy() if x_col else np.arange(1, len(history) + 1)
    if x_col and len(x) and x.min() == 0:
        x = x + 1  # Keras CSVLogger counts from 0; people count epochs from 1
    skip = {"epoch", "lr", "learning_rate"}
    numeric = [c for c in history.columns if c not in skip and pd.api.types.is_numeric_dtype(history[c])]
    bases: list[str] = []
    for c in numeric:
        base = c[4:] if c.startswith("val_") else c
        if base not in bases:
            bases.append(base)
    if not bases:
        raise ValueError("history has no metric columns")
    ncols = min(3, len(bases))
    nrows = math.ceil(len(bases) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.3 * nrows), squeeze=False)
    marker = "o" if len(history) <= 30 else None
    for ax, base in zip(axes.flat, bases):
        for col, label, color in ((base, "train", "#1f77b4"), (f"val_{base}", "validation", "#d62728")):
            if col in numeric:
                ax.plot(x, history[col].to_numpy(dtype=float), marker=marker, ms=4, color=color, label=label)
        ax.set_title(_pretty(base))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if len(x) == 1:
            ax.set_xticks(x)
        else:
            ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(bases):]:
        ax.axis("off")
    fig.suptitle(f"Learning curves{' - ' + title if title else ''}")
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion_matrices(run: RunData, path: Path) -> Path:
    """A grid of 2x2 confusion matrices (rows: true no/yes, columns: predicted no/yes), one per genre, tuned thresholds."""
    pred = run.decide()
    cms = multilabel_confusion_matrix(run.y_true, pred)
    active = [j for j in range(len(run.genres)) if run.y_true[:, j].sum() > 0 or pred[:, j].sum() > 0]
    keep = sorted(run.frequent(active))
    ncols = min(5, max(1, len(keep)))
    nrows = max(1, math.ceil(len(keep) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.5 * nrows), squeeze=False)
    for ax, j in zip(axes.flat, keep):
        cm = cms[j]
        # imshow + text rather than sns.heatmap: seaborn redraws the whole figure per panel to pick text colours
        ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(1, cm.max()))
        for (r, c), v in np.ndenumerate(cm):
            ax.text(c, r, str(v), ha="center", va="center", fontsize=9,
                    color="white" if v > 0.6 * max(1, cm.max()) else "#1d2330")
        ax.set_xticks([0, 1], ["no", "yes"])
        ax.set_yticks([0, 1], ["no", "yes"])
        label = f"thr {run.thresholds[j]:.2f}" if run.trained[j] else "not learned"
        ax.set_title(f"{run.genres[j]}  ({label})", fontsize=9)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(keep):]:
        ax.axis("off")
    if not keep:
        axes[0, 0].text(0.5, 0.5, "no genre has positives or predictions", ha="center", va="center")
    fig.suptitle(f"Per-genre confusion matrices at tuned thresholds - {run.model_name} (validation, n={len(pred)})"
                 + run.shown(len(keep), len(active)))
    fig.tight_layout()
    return _save(fig, path)


def plot_cooccurrence(run: RunData, path: Path) -> Path:
    """How often two genres share a validation film (true labels). Diagonal: films per genre. Absent genres omitted."""
    y = run.y_true
    all_present = [j for j in range(len(run.genres)) if y[:, j].sum() > 0]
    present = sorted(run.frequent(all_present))
    names = [run.genres[j] for j in present]
    co = y[:, present].T @ y[:, present] if present else np.zeros((0, 0), int)
    size = max(4.0, 0.34 * len(present) + 2.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    if present:
        mask = np.triu(np.ones_like(co, dtype=bool), k=1)
        off = co[np.tril_indices_from(co, k=-1)]
        vmax = max(1, int(off.max())) if off.size and off.max() > 0 else max(1, int(co.max()))
        # colours scaled to the pairs (the diagonal, films per genre, would wash them out); numbers stay exact
        sns.heatmap(co, mask=mask, annot=len(present) <= 25, fmt="d", cmap="rocket_r", ax=ax, square=True, vmin=0,
                    vmax=vmax, xticklabels=names, yticklabels=names, annot_kws={"fontsize": 7}, cbar_kws={"label": "films"},
                    linewidths=0.3, linecolor="white")
        ax.tick_params(labelsize=8)
    else:
        ax.text(0.5, 0.5, "no positive labels", ha="center", va="center")
        ax.axis("off")
    ax.set_title(f"Genre co-occurrence: true labels of the {len(y)} validation films\n"
                 "(diagonal: films per genre; colour scale set by the pairs)" + run.shown(len(present), len(all_present)), fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


CHART_METRICS = (("micro_f1", "micro F1"), ("macro_f1", "macro F1"), ("map_macro", "mAP (macro)"))


def comparison_chart(scores: list[tuple[str, dict[str, float | None]]], baseline: tuple[str, float] | None = None) -> bytes:
    """The runs side by side as grouped horizontal bars (PNG bytes): ``scores`` is ``[(run label, {metric: value})]``
    with the :data:`CHART_METRICS` keys (cross-fitted, tuned thresholds); ``baseline`` a ``(name, micro F1)`` drawn as a
    dashed line. Missing values are left out."""
    import io

    n, k = len(scores), len(CHART_METRICS)
    fig, ax = plt.subplots(figsize=(8.5, max(2.2, 0.24 * n * k + 1.4)))
    height = 0.8 / k
    colours = sns.color_palette("deep", k)
    best = max((m.get("micro_f1") or 0.0 for _, m in scores), default=0.0)
    for j, (key, name) in enumerate(CHART_METRICS):
        ys = [i + (j - (k - 1) / 2) * height for i in range(n)]
        vals = [m.get(key) for _, m in scores]
        bars = ax.barh([y for y, v in zip(ys, vals) if v is not None], [v for v in vals if v is not None], height=height * 0.92,
                       color=colours[j], label=name)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    if baseline is not None:
        ax.axvline(baseline[1], color="#667085", linestyle="--", linewidth=1)
        ax.text(baseline[1], -0.62, f" {baseline[0]}: micro F1 {baseline[1]:.3f}", fontsize=7, color="#667085", va="center")
    ax.set_yticks(range(n), [label for label, _ in scores])
    ax.set_ylim(n - 0.5, -0.8)  # first run on top, as in the table; room above it for the baseline's name
    ax.set_xlim(0, min(1.0, max(best, baseline[1] if baseline else 0.0) * 1.25 + 0.05))
    ax.set_xlabel("validation score (per-genre thresholds, cross-fitted)")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI)
    finally:
        plt.close(fig)
    return buf.getvalue()


def per_genre_f1(run: RunData) -> pd.DataFrame:
    """Per trained genre: F1 at tuned thresholds and at 0.5, plus support, computed from val_predictions.csv."""
    idx = run.trained_idx
    tuned = f1_score(run.y_true, run.decide(), average=None, zero_division=0)
    half = f1_score(run.y_true, run.decide(0.5), average=None, zero_division=0)
    return pd.DataFrame({
        "genre": [run.genres[j] for j in idx],
        "tuned": tuned[idx],
        "at_0_5": half[idx],
        "support": run.y_true[:, idx].sum(axis=0),
        "threshold": run.thresholds[idx],
    })


def plot_per_genre_f1(run: RunData, path: Path) -> Path:
    full = per_genre_f1(run)
    df = full.sort_values("support", ascending=False, kind="stable").head(MAX_LABELS).sort_values("tuned", ascending=True)
    fig, ax = plt.subplots(figsize=(7.5, max(2.5, 0.32 * len(df) + 1.2)))
    y = np.arange(len(df))
    h = 0.4
    ax.barh(y + h / 2, df["tuned"], height=h, color="#2a9d8f", label="stored thresholds (in-sample)")
    ax.barh(y - h / 2, df["at_0_5"], height=h, color="#bbbbbb", label="threshold 0.5")
    ax.set_yticks(y, [f"{g} (n={s})" for g, s in zip(df["genre"], df["support"])], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1 (validation)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"Per-genre F1 - {run.model_name}" + run.shown(len(df), len(full)), fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_thresholds(run: RunData, path: Path) -> Path:
    """For the most frequent learned labels: the precision-recall curve (scikit-learn's display) and F1 against the
    threshold, each with the run's chosen threshold marked."""
    from sklearn.metrics import PrecisionRecallDisplay, precision_recall_curve

    labels = run.frequent([j for j in run.trained_idx if run.y_true[:, j].sum() > 0], CURVE_LABELS)
    fig, axes = plt.subplots(2, max(1, len(labels)), figsize=(2.9 * max(1, len(labels)), 5.6), squeeze=False)
    for col, j in enumerate(labels):
        y, p, t = run.y_true[:, j], run.probs[:, j], run.thresholds[j]
        PrecisionRecallDisplay.from_predictions(y, p, ax=axes[0, col], name=None, plot_chance_level=True)
        prec, rec, thr = precision_recall_curve(y, p)
        f1 = 2 * prec[:-1] * rec[:-1] / np.maximum(prec[:-1] + rec[:-1], 1e-12)
        axes[1, col].plot(thr, f1, color="#2a9d8f")
        if t <= 1.0:
            decided = p >= t
            tp = int((decided & (y > 0)).sum())
            p_at, r_at = tp / max(int(decided.sum()), 1), tp / max(int(y.sum()), 1)
            axes[0, col].plot([r_at], [p_at], "o", color="#e76f51", label=f"thr {t:.2f}")
            axes[1, col].axvline(t, color="#e76f51", linestyle="--", label=f"thr {t:.2f}")
        axes[0, col].set_title(run.genres[j], fontsize=9)
        axes[0, col].legend(fontsize=7, loc="lower left")
        axes[1, col].set_xlabel("threshold", fontsize=8)
        axes[1, col].set_ylabel("F1", fontsize=8)
        axes[1, col].set_ylim(0, 1)
        axes[1, col].legend(fontsize=7)
        for ax in axes[:, col]:
            ax.tick_params(labelsize=7)
    if not labels:
        axes[0, 0].text(0.5, 0.5, "no learned label has positives", ha="center", va="center")
    fig.suptitle(f"Precision-recall and F1 by threshold (chosen threshold marked) - {run.model_name}, validation"
                 + run.shown(len(labels), int(sum(run.y_true[:, j].sum() > 0 for j in run.trained_idx))), fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_reliability(run: RunData, path: Path) -> Path:
    """The reliability diagram of the validation probabilities (all learned labels pooled): the model's and, where
    the run calibrates, the calibrated ones (cross-fitted, from calibration.json), with the ECE of each."""
    from movie_genres.evaluation.calibration import ece, reliability

    idx = run.trained_idx
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    ax.plot([0, 1], [0, 1], ":", color="#888888", label="perfectly calibrated")
    model = reliability(run.y_true[:, idx], run.probs[:, idx])
    ax.plot(model["mean_probability"], model["fraction_positive"], "o-", color="#bbbbbb",
            label=f"model (ECE {ece(run.y_true[:, idx], run.probs[:, idx]):.3f})")
    cal = run.calibration or {}
    if cal.get("reliability_after") and any(v is not None for v in (cal.get("labels") or {}).values()):
        after = cal["reliability_after"]
        ax.plot(after["mean_probability"], after["fraction_positive"], "o-", color="#2a9d8f",
                label=f"calibrated, cross-fitted (ECE {cal['ece_after']:.3f})")
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("fraction of films with the label")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(f"Reliability - {run.model_name} (validation, learned labels pooled)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def write_per_label_csv(run: RunData, path: Path) -> Path:
    """Every label's validation numbers (F1 at the run's thresholds and at 0.5, support, threshold, and the
    precision / recall training expects, cross-fitted), most frequent first: the plots show the top ones only."""
    df = per_genre_f1(run).sort_values("support", ascending=False, kind="stable")
    expected = (run.expected or {})
    df["expected_precision"] = [expected.get(g, {}).get("precision") for g in df["genre"]]
    df["expected_recall"] = [expected.get(g, {}).get("recall") for g in df["genre"]]
    atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))
    return path


def write_run_plots(run_dir: str | Path) -> list[Path]:
    """Write ``run_dir/plots/*.png`` from the run folder's files and return the written paths.

    learning_curves.png is written only when history.csv has rows (models fitted on features may have none); the
    three validation plots only when val_predictions.csv exists.
    """
    run = load_run(run_dir)
    out = run.run_dir / "plots"
    written: list[Path] = []
    if run.history is not None:
        try:
            written.append(plot_learning_curves(run.history, out / "learning_curves.png", run.model_name))
        except ValueError:
            pass  # a history without metric columns: nothing to draw
    if run.probs is not None and len(run.probs):
        written.append(plot_confusion_matrices(run, out / "confusion_matrices.png"))
        written.append(plot_cooccurrence(run, out / "cooccurrence.png"))
        written.append(plot_per_genre_f1(run, out / "per_genre_f1.png"))
        written.append(plot_thresholds(run, out / "thresholds.png"))
        written.append(plot_reliability(run, out / "reliability.png"))
        written.append(write_per_label_csv(run, out / "per_label.csv"))
    return written
