"""Self-contained HTML: the sample-predictions page and the multi-run report.

The pages are Jinja2 templates (``reporting/templates/*.html.j2``, autoescaped); this module only gathers what they
show. Pages carry their own CSS, their posters as small base64 JPEG thumbnails and their plots as base64 PNGs, so a
page opens offline and can be mailed around as one file.

Films come from the validated loader (``movie_genres.data.dataset.load_dataset``), the same one training uses, and are
always joined to predictions **by Id**, never by row position.
"""
from __future__ import annotations

import base64
import datetime as _dt
import io
import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

import jinja2
import numpy as np

from movie_genres.data.dataset import IMAGES_DIR, Dataset, load_dataset
from movie_genres.io import OutputError, write_text
from movie_genres.reporting.plots import CHART_METRICS, PLOT_NAMES, RunData, comparison_chart, load_run, per_genre_f1, write_run_plots

MAX_TABLE_ROWS = 30  # per-label rows shown (the most frequent); every label is in each run's plots/per_label.csv
THUMB_SIZE = (120, 180)  # width, height bound; posters keep their aspect ratio
PLOT_CAPTIONS = {
    "learning_curves.png": "learning curves (train vs validation)",
    "confusion_matrices.png": "per-genre confusion matrices at the stored thresholds",
    "cooccurrence.png": "genre co-occurrence (true labels, validation)",
    "per_genre_f1.png": "per-genre F1, stored thresholds vs 0.5",
    "thresholds.png": "precision-recall and F1 by threshold, the chosen threshold marked",
    "reliability.png": "reliability diagram: predicted probability against how often the label is true",
}
COMPARE_COLUMNS = [  # (header, section in metrics.json or None for top level, key)
    ("micro F1", "tuned", "micro_f1"),
    ("macro F1", "tuned", "macro_f1"),
    ("weighted F1", "tuned", "weighted_f1"),
    ("samples F1", "tuned", "samples_f1"),
    ("micro precision", "tuned", "micro_precision"),
    ("micro recall", "tuned", "micro_recall"),
    ("mAP (macro)", "tuned", "map_macro"),
    ("micro F1 @0.5", "at_0_5", "micro_f1"),
    ("micro precision @0.5", "at_0_5", "micro_precision"),
    ("train seconds", None, "train_seconds"),
    ("inference ms / film", None, "inference_ms_per_film"),
]
_PRETTY = {"micro_f1": "micro F1", "macro_f1": "macro F1", "weighted_f1": "weighted F1", "samples_f1": "samples F1",
           "micro_precision": "micro precision", "micro_recall": "micro recall", "map_macro": "mAP (macro)",
           "at_0_5": "@0.5", "tuned": "tuned", "n_films": "films", "train_seconds": "train seconds",
           "inference_ms_per_film": "inference ms / film"}


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("movie_genres.reporting", "templates"), autoescape=True,
                              trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)


def _render(template: str, **context: Any) -> str:
    return _env().get_template(template).render(generated=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"), **context)


# ------------------------------------------------------------------------------------------------------------ helpers
def _runs(runs: Iterable[str | Path | RunData]) -> list[RunData]:
    return [r if isinstance(r, RunData) else load_run(r) for r in runs]


def run_labels(runs: Sequence[RunData]) -> list[str]:
    """Model names, made unique with the folder name where two runs share a model."""
    names = [r.model_name for r in runs]
    out = [f"{name} ({r.run_dir.name})" if names.count(name) > 1 else name for r, name in zip(runs, names)]
    # still clashing (same model, same folder name in different parents): number them
    return [f"{lab} #{i + 1}" if out.count(lab) > 1 else lab for i, lab in enumerate(out)]


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.{digits}f}" if math.isfinite(float(v)) else "—"
    return str(v)


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float, np.integer, np.floating)) and math.isfinite(float(v)):
        return float(v)
    return None


def _lower_is_better(column: str) -> bool:
    c = column.lower()
    return any(k in c for k in ("second", "_ms", "ms/", "ms_", "time", "loss", "hamming", "latency"))


def _best_mask(values: list[Any], lower: bool, digits: int = 3) -> list[bool]:
    nums = [_num(v) for v in values]
    present = [round(x, digits) for x in nums if x is not None]
    if len(present) < 2:
        return [False] * len(values)
    best = min(present) if lower else max(present)
    return [x is not None and round(x, digits) == best for x in nums]


def _table(headers: list[str], rows: list[tuple[str, list[Any], str]], lower: list[bool] | None = None,
           digits: list[int] | None = None, mark: list[bool] | bool = True, by_row: bool = False,
           css: str = "") -> dict[str, Any]:
    """A table for the ``table`` macro. rows: (row label, values, css class). The best value is marked per column, or
    per row across the ``mark`` columns with ``by_row``; ``mark`` picks the columns that compete."""
    ncol = len(headers) - 1
    lower = lower or [False] * ncol
    digits = digits or [3] * ncol
    mark = [mark] * ncol if isinstance(mark, bool) else mark
    best = [[False] * len(rows) for _ in range(ncol)]
    if by_row:
        cols = [c for c in range(ncol) if mark[c]]
        for i, r in enumerate(rows):
            for c, flag in zip(cols, _best_mask([r[1][c] for c in cols], lower[cols[0]] if cols else False, 3)):
                best[c][i] = flag
    else:
        best = [_best_mask([r[1][c] for r in rows], lower[c], digits[c]) if mark[c] else [False] * len(rows)
                for c in range(ncol)]
    out_rows = []
    for i, (label, values, cls) in enumerate(rows):
        cells = [{"cls": "best" if best[c][i] else "na" if v is None else "txt" if isinstance(v, str) else "",
                  "text": v if isinstance(v, str) else _fmt(v, digits[c])} for c, v in enumerate(values)]
        out_rows.append({"label": label, "cls": cls, "cells": cells})
    return {"headers": headers, "rows": out_rows, "css": css}


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        elif not isinstance(v, (list, tuple)):
            out[f"{prefix}{k}"] = v
    return out


def _pretty(column: str) -> str:
    return " ".join(_PRETTY.get(part, part.replace("_", " ")) for part in column.split("."))


def _dict_table(d: dict[str, Any], first: str) -> dict[str, Any]:
    """name -> metrics dict (possibly nested) as a table; columns are the union of scalar keys, in first-seen order."""
    flat = {str(k): (_flatten(v) if isinstance(v, dict) else {"value": v}) for k, v in d.items()}
    cols: list[str] = []
    for m in flat.values():
        cols += [c for c in m if c not in cols]
    order = ["micro_f1", "macro_f1", "weighted_f1", "samples_f1", "micro_precision", "micro_recall", "map_macro"]
    cols.sort(key=lambda c: next((i for i, o in enumerate(order) if c.endswith(o)), len(order)))
    rows = [(name, [m.get(c) for c in cols], "") for name, m in flat.items()]
    return _table([first] + [_pretty(c) for c in cols], rows, lower=[_lower_is_better(c) for c in cols])


def _same_metrics(a: dict[str, Any], b: dict[str, Any]) -> bool:
    for k in set(a) | set(b):
        x, y = _num(a.get(k)), _num(b.get(k))
        if (x is None) != (y is None) or (x is not None and abs(x - y) > 1e-9):
            return False
    return True


# ---------------------------------------------------------------------------------------------------- dataset + posters
def poster_thumbnail(path: str | Path | None, size: tuple[int, int] = THUMB_SIZE, quality: int = 72) -> str | None:
    """A ``data:image/jpeg;base64,...`` URI of a small thumbnail, or None if the poster is missing or unreadable.

    The poster is decoded by ``open_poster``, as the models see it (EXIF orientation applied, RGB)."""
    from movie_genres.features.posters import PosterError, open_poster

    if path is None:
        return None
    try:
        im = open_poster(path)
        im.thumbnail(size)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality, optimize=True)
    except (PosterError, OSError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _dataset(data: str | Path | Dataset) -> Dataset:
    return data if isinstance(data, Dataset) else load_dataset(data)


# ----------------------------------------------------------------------------------------------------------- samples
def pick_sample_ids(runs: Sequence[RunData], ids: Sequence[str] | None = None, n: int = 24, seed: int = 0) -> list[str]:
    """Validation Ids from the first run present in every run: ``ids`` filtered to those, else ``n`` drawn with ``seed``."""
    if not runs or runs[0].ids is None:
        return []
    common = set(runs[0].ids)
    for r in runs[1:]:
        common &= set(r.ids or [])
    if ids is not None:
        return [str(i) for i in ids if str(i) in common]
    pool = [i for i in dict.fromkeys(runs[0].ids) if i in common]  # first run's order, no duplicates
    if n >= len(pool):
        return pool
    rng = np.random.default_rng(seed)
    return [pool[k] for k in sorted(rng.choice(len(pool), size=n, replace=False))]


def _film_preds(r: RunData, label: str, k: int, decided: np.ndarray, truth: set[str]) -> dict[str, Any]:
    """One run's row of a film card: its top-3 trained genres, then any other decided genre."""
    order = [j for j in np.argsort(-r.probs[k], kind="stable") if r.trained[j]]
    top = order[:3]
    extra = [j for j in order[3:] if decided[k, j]]
    chips = [{"genre": r.genres[j], "prob": float(r.probs[k, j]), "threshold": float(r.thresholds[j]),
              "cls": " ".join(["chip", "decided" if decided[k, j] else "undecided",
                               "ok" if r.genres[j] in truth else "wrong"])}
             for j in top + extra]
    return {"label": label, "chips": chips, "n_top": len(top),
            "data_top": "|".join(f"{r.genres[j]}={r.probs[k, j]:.4f}" for j in top)}


def _why(e: dict[str, Any] | None, overview: str | None) -> dict[str, Any] | None:
    """What a film card shows of an explanation (``movie_genres.explanation.explain``'s answer for one genre, with
    ``label``, ``genre`` and ``words``/``grid`` of the whole answer): the overview cut into word spans shaded by weight,
    and the poster grid's cells shaded the same way (orange pushed the genre up, blue down; the strongest is opaque)."""
    if not e:
        return None
    g = e["explanations"][e["genre"]]
    weights = {w["i"]: w["weight"] for w in g["words"]}
    top = max((abs(v) for v in weights.values()), default=0.0) or 1.0
    segments, at = [], 0
    if overview and e.get("words"):
        for i, span in enumerate(e["words"]):
            if span["start"] > at:
                segments.append({"text": overview[at : span["start"]]})
            w = weights.get(i, 0.0)
            segments.append({"text": overview[span["start"] : span["end"]], "weight": w,
                             "up": w > 0, "alpha": round(min(1.0, abs(w) / top), 2)})
            at = span["end"]
        segments.append({"text": overview[at:]})
    cells, grid = [], e.get("grid")
    if g.get("heatmap") and grid:
        flat = [v for row in g["heatmap"] for v in row]
        peak = max((abs(v) for v in flat), default=0.0) or 1.0
        cells = [{"up": v > 0, "alpha": round(0.6 * min(1.0, abs(v) / peak), 2), "weight": v} for v in flat]
    words = [w for w in g["words"] if w["weight"] > 0][:3]
    return {"label": e["label"], "genre": e["genre"], "prob": g["probability"], "segments": segments, "cells": cells,
            "rows": grid[0] if grid else 0, "cols": grid[1] if grid else 0, "top_words": words,
            "by_modality": g.get("by_modality"), "warnings": e.get("warnings", [])}


def _samples_context(data: str | Path | Dataset, runs: list[RunData], ids: Sequence[str] | None, n: int,
                     seed: int, explanations: dict[str, dict] | None = None) -> dict[str, Any]:
    ds = _dataset(data)
    labels = run_labels(runs)
    row_of = {fid: i for i, fid in enumerate(ds.ids)}  # the loader keeps the first row of a duplicated Id
    # per run: Id -> row number in that run's val_predictions.csv (first occurrence), and the decisions
    lookups = []
    for r in runs:
        pos: dict[str, int] = {}
        for k, i in enumerate(r.ids or []):
            pos.setdefault(i, k)
        lookups.append((pos, r.decide() if r.probs is not None else None))

    films = []
    for fid in pick_sample_ids(runs, ids, n, seed):
        i = row_of.get(fid)
        if i is not None:
            overview = ds.overviews[i]
            truth = [g for g, on in zip(ds.genres, ds.labels[i]) if on]
            poster = ds.poster_paths[i]
        else:  # not among the dataset's usable films: the run's own labels
            k = lookups[0][0][fid]
            overview, poster = None, ds.root / IMAGES_DIR / f"{fid}.jpg"
            truth = [g for g, t in zip(runs[0].genres, runs[0].y_true[k]) if t]
        truth_set = set(truth)
        preds, mismatch = [], False
        for r, label, (pos, decided) in zip(runs, labels, lookups):
            k = pos[fid]
            mismatch |= i is not None and {g for g, t in zip(r.genres, r.y_true[k]) if t} != truth_set
            preds.append(_film_preds(r, label, k, decided, truth_set))
        films.append({"id": fid, "thumb": poster_thumbnail(poster), "overview": overview, "truth": truth,
                      "mismatch": mismatch, "preds": preds, "why": _why((explanations or {}).get(fid), overview)})
    return {"films": films, "n_runs": len(runs), "explained": next((f["why"]["label"] for f in films if f["why"]), None)}


def write_samples_page(out_html: str | Path, data_dir: str | Path | Dataset, runs: list[Path], ids: list[str] | None = None,
                       n: int = 24, seed: int = 0) -> Path:
    """A self-contained page of sample validation predictions: each film an ``<article class="film" data-id=...>``
    whose prediction rows carry ``data-run`` and ``data-top`` (``genre=prob|...``), so tests and scripts can check
    what is shown."""
    loaded = _runs(runs)
    names = ", ".join(run_labels(loaded))
    return write_text(out_html, _render("samples.html.j2", title=f"Sample predictions - {names}", run_names=names,
                                        s=_samples_context(data_dir, loaded, ids, n, seed)))


# ------------------------------------------------------------------------------------------------------------ report
def _comparison_table(runs: list[RunData], labels: list[str]) -> dict[str, Any]:
    rows: list[tuple[str, list[Any], str]] = []
    for r, label in zip(runs, labels):
        vals = []
        for _, section, key in COMPARE_COLUMNS:
            src = r.metrics.get(section, {}) if section else r.metrics
            vals.append(src.get(key) if isinstance(src, dict) else None)
        rows.append((label, vals, "run"))
    # constant baselines: identical ones across runs (same split) are shown once
    seen: dict[str, dict[str, Any]] = {}
    for r, label in zip(runs, labels):
        for name, m in (r.metrics.get("baselines") or {}).items():
            if not isinstance(m, dict):
                continue
            name = str(name)
            if name in seen:
                if _same_metrics(seen[name], m):
                    continue
                name = f"{name} ({label} split)"
            seen[name] = m
            vals = [m.get(key) if section == "tuned" else None for _, section, key in COMPARE_COLUMNS]
            rows.append((f"baseline: {name}", vals, "baseline"))
    headers = ["run"] + [h for h, _, _ in COMPARE_COLUMNS]
    lower = [_lower_is_better(key) for _, _, key in COMPARE_COLUMNS]
    digits = [1 if key == "train_seconds" else 2 if key == "inference_ms_per_film" else 3 for _, _, key in COMPARE_COLUMNS]
    return _table(headers, rows, lower, digits, css="compare")


def _per_genre_table(runs: list[RunData], labels: list[str]) -> dict[str, Any]:
    f1: list[dict[str, float]] = []
    support: dict[str, Any] = {}
    for r in runs:
        pg = r.metrics.get("per_genre") or {}
        vals = {g: m.get("f1") for g, m in pg.items() if isinstance(m, dict) and m.get("f1") is not None}
        for g, m in pg.items():
            if isinstance(m, dict) and m.get("support") is not None:
                support.setdefault(g, m["support"])
        if not vals and r.probs is not None:  # older runs: compute from the predictions
            df = per_genre_f1(r)
            vals = dict(zip(df["genre"], df["tuned"]))
            support.update({g: int(s) for g, s in zip(df["genre"], df["support"]) if g not in support})
        trained = {g for g, t in zip(r.genres, r.trained) if t}
        f1.append({g: v for g, v in vals.items() if g in trained})
    rows = []
    order = sorted(runs[0].genres, key=lambda g: -(support.get(g) or 0))  # most frequent first (stable: schema order)
    for g in order:
        vals = [d.get(g) for d in f1]
        if all(v is None for v in vals):
            continue
        if len(runs) == 1:
            winner = labels[0]
        else:
            winner = ", ".join(lab for lab, m in zip(labels, _best_mask(vals, False)) if m) or "—"
        rows.append((g, [support.get(g)] + vals + [winner], ""))
    hidden = max(0, len(rows) - MAX_TABLE_ROWS)
    rows = rows[:MAX_TABLE_ROWS]
    return {"hidden": hidden} | _table(["genre", "support"] + labels + ["best modality/model"], rows, digits=[0] + [3] * len(labels) + [0],
                  mark=[False] + [True] * len(labels) + [False], by_row=True)


def _skipped_table(runs: list[RunData], labels: list[str]) -> dict[str, Any]:
    rows = []
    for r, lab in zip(runs, labels):
        skipped = r.metrics.get("skipped") or {}
        detail = ", ".join(f"{k}: {v}" for k, v in skipped.items()) if isinstance(skipped, dict) else str(skipped)
        rows.append((lab, [r.metrics.get("n_films"), r.metrics.get("n_skipped"), detail or "—"], ""))
    return _table(["run", "validation films", "skipped rows", "why skipped"], rows, mark=False, digits=[0, 0, 0])


def _chart(runs: list[RunData], labels: list[str]) -> str:
    """The comparison as a chart (base64 PNG): each run's micro F1, macro F1 and mAP, and the best constant baseline."""
    scores = [(lab, {key: _num((r.metrics.get("tuned") or {}).get(key)) for key, _ in CHART_METRICS}) for r, lab in zip(runs, labels)]
    baselines = [(str(name), _num(m.get("micro_f1"))) for r in runs[:1] for name, m in (r.metrics.get("baselines") or {}).items()
                 if isinstance(m, dict) and _num(m.get("micro_f1")) is not None]
    return base64.b64encode(comparison_chart(scores, max(baselines, key=lambda b: b[1]) if baselines else None)).decode("ascii")


def _shared_plots(runs: list[RunData], plots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Take out of every run's plots those that are the same for all runs (byte-identical, or drawn from the same
    data: the co-occurrence of the same validation labels) and return them once."""
    if len(runs) < 2:
        return []
    shared = []
    for name in PLOT_NAMES:
        figs = [next((f for f in p["figures"] if f["name"] == name), None) for p in plots]
        if any(f is None for f in figs):
            continue
        same = all(f["b64"] == figs[0]["b64"] for f in figs)
        if name == "cooccurrence.png" and not same:  # what it draws: films per genre pair, over the same genres
            def pairs(r: RunData):
                return None if r.y_true is None else (tuple(r.genres), len(r.y_true), (r.y_true.T @ r.y_true).tobytes())
            same = pairs(runs[0]) is not None and all(pairs(r) == pairs(runs[0]) for r in runs)
        if same:
            shared.append(figs[0])
            for p in plots:
                p["figures"] = [f for f in p["figures"] if f["name"] != name]
    return shared


def _plots(r: RunData, label: str) -> dict[str, Any]:
    """The run's plots as base64 PNGs, drawn first where the run folder lacks them."""
    plots = r.run_dir / "plots"
    expected = (["learning_curves.png"] if r.history is not None else []) + (
        ["confusion_matrices.png", "cooccurrence.png", "per_genre_f1.png", "thresholds.png", "reliability.png"]
        if r.probs is not None else [])
    error = None
    if any(not (plots / name).is_file() for name in expected):
        try:
            write_run_plots(r.run_dir)
        except OutputError as exc:
            error = str(exc)
    figures = [{"name": name, "caption": PLOT_CAPTIONS.get(name, name),
                "b64": base64.b64encode((plots / name).read_bytes()).decode("ascii")}
               for name in PLOT_NAMES if (plots / name).is_file()]
    return {"label": label, "error": error, "no_history": r.history is None, "figures": figures}


def write_report(run_dirs: list[Path], out_html: str | Path, data_dir: str | Path | Dataset | None = None,
                 title: str = "movie-genres report", n_samples: int = 24, seed: int = 0,
                 explanations: dict[str, dict] | None = None) -> Path:
    """One self-contained HTML report comparing runs (all numbers on the validation split). See the module docstring.

    ``explanations``: ``{film Id: explain()'s answer + "label" (the run it explains) + "genre" (the one shown)}`` for
    sample films (``pick_sample_ids`` with the same ``n_samples`` and ``seed`` gives their Ids); their cards show it."""
    runs = _runs(run_dirs)
    if not runs:
        raise ValueError("write_report needs at least one run folder")
    labels = run_labels(runs)
    n_films = sorted({r.metrics.get("n_films") for r in runs if r.metrics.get("n_films") is not None})
    excluded = [list(r.metrics.get("excluded_genres") or r.excluded) for r in runs]
    by_modality = [(lab, _dict_table(r.metrics["by_modality"], "setting")) for r, lab in zip(runs, labels)
                   if isinstance(r.metrics.get("by_modality"), dict) and r.metrics["by_modality"]]
    with_preds = [r for r in runs if r.probs is not None]
    samples = (_samples_context(data_dir, with_preds, None, n_samples, seed, explanations)
               if data_dir is not None and with_preds else None)
    plots = [_plots(r, lab) for r, lab in zip(runs, labels)]
    shared = _shared_plots(runs, plots)
    modality = dict(by_modality)
    sections = [{"label": lab, "anchor": f"run-{i + 1}", "path": str(r.run_dir), "plots": p, "by_modality": modality.get(lab),
                 "micro_f1": _num((r.metrics.get("tuned") or {}).get("micro_f1"))}
                for i, (r, lab, p) in enumerate(zip(runs, labels, plots))]
    toc = [("summary", "Summary"), ("per-genre", "Per-genre F1"), ("data", "Excluded genres & skipped rows")]
    toc += [("shared-plots", "Plots shared by every run")] if shared else []
    toc += [("runs", "Each run")] + ([("samples", "Sample predictions")] if samples else [])
    return write_text(out_html, _render(
        "report.html.j2",
        title=title,
        runs=[{"label": lab, "path": str(r.run_dir), "version": r.config.get("version")} for r, lab in zip(runs, labels)],
        toc=toc,
        films=f" ({', '.join(map(str, n_films))} validation films)" if n_films else "",
        not_cross_fitted=[lab for r, lab in zip(runs, labels)
                          if "cross-fitted" not in str(r.metrics.get("thresholds_note", ""))],
        comparison=_comparison_table(runs, labels),
        per_genre=_per_genre_table(runs, labels),
        excluded=excluded[0],
        excluded_per_run=[] if all(e == excluded[0] for e in excluded) else list(zip(labels, excluded)),
        skipped=_skipped_table(runs, labels),
        chart=_chart(runs, labels),
        shared_plots=shared,
        sections=sections,
        samples_section=samples,
    ))
