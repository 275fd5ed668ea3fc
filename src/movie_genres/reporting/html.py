"""Self-contained HTML: the sample-predictions page and the multi-run report.

Pages carry their own CSS, their posters as small base64 JPEG thumbnails and their plots as base64 PNGs, so a page
opens offline and can be mailed around as one file. Every piece of text goes through ``html.escape``.

Dataset rows (overview, true genres, poster) are always joined to predictions **by Id**, never by row position.
"""
from __future__ import annotations

import base64
import datetime as _dt
import io
import math
from html import escape
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from movie_genres.io import OutputError, write_text
from movie_genres.reporting.plots import PLOT_NAMES, RunData, load_run, per_genre_f1, write_run_plots

CSV_NAME = "IMDB_overview_genres.csv"
THUMB_SIZE = (120, 180)  # width, height bound; posters keep their aspect ratio

CSS = """
:root { --fg:#1d2330; --muted:#667085; --line:#e4e7ec; --bg:#f7f8fa; --accent:#2a9d8f; --ok:#1e7b4f; --okbg:#dff3e8;
        --bad:#b42318; --badbg:#fde7e4; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: var(--fg);
       background: var(--bg); margin: 0; }
main { max-width: 1280px; margin: 0 auto; padding: 24px 28px 60px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 10px; padding-bottom: 6px; border-bottom: 2px solid var(--line); }
h3 { font-size: 16px; margin: 22px 0 8px; }
p.lead { color: var(--muted); margin: 0 0 12px; }
.note { background: #fff8e1; border-left: 4px solid #f4b400; padding: 8px 12px; margin: 10px 0; }
nav.toc { margin: 10px 0 0; font-size: 13px; }
nav.toc a { margin-right: 14px; color: var(--accent); text-decoration: none; }
table { border-collapse: collapse; background: #fff; margin: 8px 0 14px; font-size: 13px;
        box-shadow: 0 1px 2px rgba(16,24,40,.06); }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th { background: #eef1f5; font-weight: 600; position: sticky; top: 0; }
th:first-child, td:first-child, td.name { text-align: left; }
tr.baseline td { color: var(--muted); font-style: italic; }
td.best { font-weight: 700; color: #000; background: #e6f4f1; }
td.na { color: #b0b6c0; }
td.txt { text-align: left; white-space: normal; }
table.compare th { white-space: normal; max-width: 92px; vertical-align: bottom; }
.tablewrap { overflow-x: auto; }
.muted { color: var(--muted); }
.plots { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
.plots figure { margin: 0; background: #fff; padding: 8px; border: 1px solid var(--line); border-radius: 6px; }
.plots img { max-width: 100%; height: auto; display: block; }
.plots figcaption { font-size: 12px; color: var(--muted); margin-top: 4px; }
.films { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 14px; }
article.film { display: flex; gap: 14px; background: #fff; border: 1px solid var(--line); border-radius: 8px;
               padding: 12px; }
.poster { width: 120px; min-width: 120px; height: auto; border-radius: 4px; align-self: flex-start; }
.poster.placeholder { height: 170px; display: flex; align-items: center; justify-content: center; text-align: center;
                      background: repeating-linear-gradient(45deg,#eceff3,#eceff3 8px,#f5f6f8 8px,#f5f6f8 16px);
                      color: var(--muted); font-size: 12px; border: 1px dashed #c8cdd5; }
.film .body { flex: 1; min-width: 0; }
.film .fid { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; color: var(--muted); }
.film .overview { margin: 4px 0 8px; }
.chip { display: inline-block; padding: 1px 7px; margin: 1px 2px 1px 0; border-radius: 10px; font-size: 12px;
        background: #eef1f5; border: 1px solid #dde2e8; white-space: nowrap; }
.truth .chip { background: #e8eefc; border-color: #c5d3f5; }
.chip.decided { font-weight: 700; border-width: 2px; }
.chip.decided.ok { background: var(--okbg); border-color: var(--ok); color: var(--ok); }
.chip.decided.wrong { background: var(--badbg); border-color: var(--bad); color: var(--bad); }
.chip.undecided.ok { border-color: var(--ok); border-style: dashed; }
table.preds { box-shadow: none; margin: 6px 0 0; width: 100%; }
table.preds td { border: 0; padding: 2px 6px 2px 0; text-align: left; white-space: normal; }
table.preds td.run { color: var(--muted); width: 1%; white-space: nowrap; font-size: 12px; }
.legend { font-size: 12px; color: var(--muted); margin: 6px 0 12px; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
"""


# ------------------------------------------------------------------------------------------------------------ helpers
def _runs(runs: Iterable[str | Path | RunData]) -> list[RunData]:
    return [r if isinstance(r, RunData) else load_run(r) for r in runs]


def run_labels(runs: Sequence[RunData]) -> list[str]:
    """Model names, made unique with the folder name where two runs share a model."""
    names = [r.model_name for r in runs]
    out = []
    for r, name in zip(runs, names):
        out.append(f"{name} ({r.run_dir.name})" if names.count(name) > 1 else name)
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
        if not math.isfinite(float(v)):
            return "—"
        return f"{float(v):.{digits}f}"
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


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}\n"
        f"<footer>Generated {escape(_dt.datetime.now().strftime('%Y-%m-%d %H:%M'))} by movie_genres.reporting. "
        "Self-contained: no external assets.</footer>\n</main>\n</body>\n</html>\n"
    )


# ---------------------------------------------------------------------------------------------------- dataset + posters
def load_dataset_table(data_dir: str | Path, genres: Sequence[str]) -> pd.DataFrame:
    """The dataset CSV indexed by Id with ``Overview`` and ``truth`` (list of genre names); first row wins per Id."""
    path = Path(data_dir) / CSV_NAME
    df = pd.read_csv(path, dtype={"Id": str, "Overview": str, "Genre": str}, keep_default_na=False)
    df["Id"] = df["Id"].astype(str).str.strip()
    df = df.drop_duplicates("Id", keep="first").set_index("Id")
    cols = [g for g in genres if g in df.columns]
    onehot = df[cols].apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy() > 0
    df["truth"] = [[g for g, on in zip(cols, row) if on] for row in onehot]
    return df[["Overview", "truth"]]


def poster_thumbnail(path: str | Path, size: tuple[int, int] = THUMB_SIZE, quality: int = 72) -> str | None:
    """A ``data:image/jpeg;base64,...`` URI of a small thumbnail, or None if the poster is missing or unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.draft("RGB", (size[0] * 2, size[1] * 2))  # JPEG: decode at reduced scale, much faster
            im = im.convert("RGB")
            im.thumbnail(size)
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=quality, optimize=True)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


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


def samples_html(data_dir: str | Path, runs: Iterable[str | Path | RunData], ids: Sequence[str] | None = None,
                 n: int = 24, seed: int = 0, heading: str | None = "h2") -> str:
    """The samples section as an HTML fragment (used by ``write_samples_page`` and embedded in ``write_report``).

    Each film is an ``<article class="film" data-id=...>``; its prediction rows carry ``data-run`` and ``data-top``
    (``genre=prob|...``) so tests and scripts can check what is shown.
    """
    runs = _runs(runs)
    labels = run_labels(runs)
    data_dir = Path(data_dir)
    chosen = pick_sample_ids(runs, ids, n, seed)
    genres = runs[0].genres if runs else []
    table = load_dataset_table(data_dir, genres)

    # per run: Id -> row number in that run's val_predictions.csv (first occurrence), and the decisions
    lookups = []
    for r in runs:
        pos: dict[str, int] = {}
        for k, i in enumerate(r.ids or []):
            pos.setdefault(i, k)
        lookups.append((pos, r.decide() if r.probs is not None else None))

    parts = [f"<{heading} id=\"samples\">Sample predictions</{heading}>" if heading else "",
             f"<p class=\"lead\">{len(chosen)} validation films"
             f"{' present in every run' if len(runs) > 1 else ''}, each run's top-3 genres with probabilities. "
             "Overview, true genres and poster come from the dataset CSV joined by Id.</p>",
             "<p class=\"legend\"><span class=\"chip decided ok\">decided &amp; true</span> "
             "<span class=\"chip decided wrong\">decided &amp; not true</span> "
             "<span class=\"chip undecided ok\">true, not decided</span> "
             "<span class=\"chip\">neither</span> &nbsp;— decided = probability at or above the run's tuned "
             "threshold.</p>"]
    if not chosen:
        parts.append("<p class=\"note\">No validation film is present in every run (different splits?).</p>")
    parts.append("<div class=\"films\">")
    for fid in chosen:
        in_csv = fid in table.index
        overview = str(table.at[fid, "Overview"]) if in_csv else None
        truth = list(table.at[fid, "truth"]) if in_csv else None
        if truth is None:  # not in the CSV: fall back to the run's own labels
            k = lookups[0][0][fid]
            truth = [g for g, t in zip(runs[0].genres, runs[0].y_true[k]) if t]
        thumb = poster_thumbnail(data_dir / "Images" / f"{fid}.jpg")
        if thumb:
            poster = f"<img class=\"poster\" data-id=\"{escape(fid)}\" src=\"{thumb}\" alt=\"poster {escape(fid)}\">"
        else:
            poster = f"<div class=\"poster placeholder\" data-id=\"{escape(fid)}\">no poster</div>"
        truth_set = set(truth)
        rows = []
        mismatch = False
        for r, label, (pos, decided) in zip(runs, labels, lookups):
            k = pos[fid]
            run_truth = {g for g, t in zip(r.genres, r.y_true[k]) if t}
            if in_csv and run_truth != truth_set:
                mismatch = True
            order = [j for j in np.argsort(-r.probs[k], kind="stable") if r.trained[j]]
            top = order[:3]
            extra = [j for j in order[3:] if decided[k, j]]
            chips = []
            for j in top + extra:
                g = r.genres[j]
                cls = ["chip", "decided" if decided[k, j] else "undecided", "ok" if g in truth_set else "wrong"]
                chips.append(f"<span class=\"{' '.join(cls)}\" title=\"threshold {r.thresholds[j]:.2f}\">"
                             f"{escape(g)} {r.probs[k, j]:.2f}</span>")
            if extra:
                chips.insert(len(top), "<span class=\"muted\">also decided:</span>")
            data_top = "|".join(f"{r.genres[j]}={r.probs[k, j]:.4f}" for j in top)
            rows.append(f"<tr class=\"pred\" data-run=\"{escape(label)}\" data-top=\"{escape(data_top)}\">"
                        f"<td class=\"run\">{escape(label)}</td><td>{''.join(chips)}</td></tr>")
        truth_html = "".join(f"<span class=\"chip\">{escape(g)}</span>" for g in truth) or "<span class=\"muted\">none</span>"
        warn = ("<p class=\"note\">The labels in val_predictions.csv differ from the dataset CSV for this Id.</p>"
                if mismatch else "")
        ov = escape(overview) if overview is not None else "<span class=\"muted\">(not in the dataset CSV)</span>"
        parts.append(
            f"<article class=\"film\" data-id=\"{escape(fid)}\">{poster}<div class=\"body\">"
            f"<div class=\"fid\">{escape(fid)}</div><p class=\"overview\">{ov}</p>"
            f"<div class=\"truth\" data-genres=\"{escape('|'.join(truth))}\"><b>True:</b> {truth_html}</div>"
            f"{warn}<table class=\"preds\">{''.join(rows)}</table></div></article>"
        )
    parts.append("</div>")
    return "\n".join(parts)


def write_samples_page(out_html: str | Path, data_dir: str | Path, runs: list[Path], ids: list[str] | None = None,
                       n: int = 24, seed: int = 0) -> Path:
    """A self-contained page of sample validation predictions (see ``samples_html``)."""
    loaded = _runs(runs)
    names = ", ".join(run_labels(loaded))
    body = (f"<h1>Sample predictions</h1><p class=\"lead\">Runs: {escape(names)}. "
            "All films are from the validation split.</p>" + samples_html(data_dir, loaded, ids, n, seed, heading=None))
    return write_text(out_html, _page(f"Sample predictions - {names}", body))


# ------------------------------------------------------------------------------------------------------------ report
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


def _table(headers: list[str], rows: list[tuple[str, list[Any], str]], lower: list[bool] | None = None,
           digits: list[int] | None = None, mark: list[bool] | bool = True, by_row: bool = False, css: str = "") -> str:
    """rows: (row label, values, css class). The best value in bold: per column, or per row across the ``mark`` columns
    with ``by_row``; ``mark`` picks the columns that compete."""
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
    out = [f"<div class=\"tablewrap\"><table class=\"{escape(css)}\"><thead><tr>"
           + "".join(f"<th>{escape(h)}</th>" for h in headers) + "</tr></thead><tbody>"]
    for i, (label, values, cls) in enumerate(rows):
        cells = []
        for c, v in enumerate(values):
            klass = "best" if best[c][i] else ("na" if v is None else "txt" if isinstance(v, str) else "")
            text = _fmt(v, digits[c]) if not isinstance(v, str) else v
            cells.append(f"<td class=\"{klass}\">{escape(text)}</td>" if klass else f"<td>{escape(text)}</td>")
        out.append(f"<tr class=\"{escape(cls)}\"><td class=\"name\">{escape(label)}</td>{''.join(cells)}</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            continue
        else:
            out[key] = v
    return out


def _dict_table(d: dict[str, Any], first: str) -> str:
    """name -> metrics dict (possibly nested) as a table; columns are the union of scalar keys, in first-seen order."""
    flat = {str(k): (_flatten(v) if isinstance(v, dict) else {"value": v}) for k, v in d.items()}
    cols: list[str] = []
    for m in flat.values():
        cols += [c for c in m if c not in cols]
    order = ["micro_f1", "macro_f1", "weighted_f1", "samples_f1", "micro_precision", "micro_recall", "map_macro"]
    cols.sort(key=lambda c: next((i for i, o in enumerate(order) if c.endswith(o)), len(order)))
    rows = [(name, [m.get(c) for c in cols], "") for name, m in flat.items()]
    return _table([first] + [_pretty(c) for c in cols], rows, lower=[_lower_is_better(c) for c in cols])


_PRETTY = {"micro_f1": "micro F1", "macro_f1": "macro F1", "weighted_f1": "weighted F1", "samples_f1": "samples F1",
           "micro_precision": "micro precision", "micro_recall": "micro recall", "map_macro": "mAP (macro)",
           "at_0_5": "@0.5", "tuned": "tuned", "n_films": "films", "train_seconds": "train seconds",
           "inference_ms_per_film": "inference ms / film"}


def _pretty(column: str) -> str:
    return " ".join(_PRETTY.get(part, part.replace("_", " ")) for part in column.split("."))


def _same_metrics(a: dict[str, Any], b: dict[str, Any]) -> bool:
    for k in set(a) | set(b):
        x, y = _num(a.get(k)), _num(b.get(k))
        if (x is None) != (y is None) or (x is not None and abs(x - y) > 1e-9):
            return False
    return True


def _comparison_section(runs: list[RunData], labels: list[str]) -> str:
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
    n_films = sorted({r.metrics.get("n_films") for r in runs if r.metrics.get("n_films") is not None})
    films = f" ({', '.join(map(str, n_films))} validation films)" if n_films else ""
    return (
        "<h2 id=\"comparison\">Comparison</h2>"
        f"<p class=\"lead\">Validation split{escape(films)}. Columns without a suffix use each run's tuned per-genre "
        "thresholds (tuned on this same validation split, so slightly optimistic); @0.5 uses 0.5 for every genre. "
        "Averages cover the learned genres only. Best value per column in <b>bold</b> (lowest for times). "
        "Baselines predict the same genres for every film.</p>"
        + _table(headers, rows, lower, digits, css="compare")
    )


def _per_genre_section(runs: list[RunData], labels: list[str]) -> str:
    genres = runs[0].genres
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
    shown = [g for g in genres if any(g in d for d in f1)]
    rows = []
    for g in shown:
        vals = [d.get(g) for d in f1]
        mask = _best_mask(vals, False)
        if len(runs) == 1:
            winner = labels[0] if vals[0] is not None else "—"
        else:
            winner = ", ".join(lab for lab, m in zip(labels, mask) if m) or "—"
        rows.append((g, [support.get(g)] + vals + [winner], ""))
    headers = ["genre", "support"] + labels + ["best modality/model"]
    table = _table(headers, rows, digits=[0] + [3] * len(labels) + [0],
                   mark=[False] + [True] * len(labels) + [False], by_row=True)
    return ("<h2 id=\"per-genre\">Per-genre F1</h2><p class=\"lead\">F1 per genre at each run's tuned thresholds on the "
            "validation split; support = validation films with the genre. The last column names the run that wins "
            "each genre.</p>" + table)


def _data_section(runs: list[RunData], labels: list[str]) -> str:
    parts = ["<h2 id=\"data\">Excluded genres and skipped rows</h2>"]
    excl = [list(r.metrics.get("excluded_genres") or r.excluded) for r in runs]
    if all(e == excl[0] for e in excl):
        items = ", ".join(escape(g) for g in excl[0]) or "none"
        parts.append(f"<p>Genres in the schema but not learned (too few training positives), excluded from the "
                     f"averages: <b>{items}</b>.</p>")
    else:
        parts.append("<p>Genres in the schema but not learned (too few training positives), per run:</p><ul>")
        parts += [f"<li>{escape(lab)}: {', '.join(escape(g) for g in e) or 'none'}</li>" for lab, e in zip(labels, excl)]
        parts.append("</ul>")
    rows = []
    for r, lab in zip(runs, labels):
        skipped = r.metrics.get("skipped") or {}
        detail = ", ".join(f"{k}: {v}" for k, v in skipped.items()) if isinstance(skipped, dict) else str(skipped)
        rows.append((lab, [r.metrics.get("n_films"), r.metrics.get("n_skipped"), detail or "—"], ""))
    parts.append(_table(["run", "validation films", "skipped rows", "why skipped"], rows, mark=False,
                        digits=[0, 0, 0]))
    return "".join(parts)


def _optional_sections(runs: list[RunData], labels: list[str]) -> str:
    parts = []
    for key, title, lead in (
        ("by_modality", "Quality by available input",
         "The same validation films with only the poster, only the overview, or both given to the model."),
        ("ablation", "Ablation", "Variants of the run, each evaluated on the validation split."),
    ):
        present = [(r, lab) for r, lab in zip(runs, labels) if isinstance(r.metrics.get(key), dict) and r.metrics[key]]
        if not present:
            continue
        parts.append(f"<h2 id=\"{key}\">{escape(title)}</h2><p class=\"lead\">{escape(lead)}</p>")
        for r, lab in present:
            parts.append(f"<h3>{escape(lab)}</h3>" + _dict_table(r.metrics[key], "setting"))
    return "".join(parts)


def _plots_section(runs: list[RunData], labels: list[str]) -> str:
    captions = {
        "learning_curves.png": "learning curves (train vs validation)",
        "confusion_matrices.png": "per-genre confusion matrices at tuned thresholds",
        "cooccurrence.png": "genre co-occurrence (true labels, validation)",
        "per_genre_f1.png": "per-genre F1, tuned thresholds vs 0.5",
    }
    parts = ["<h2 id=\"plots\">Plots</h2>"]
    for r, lab in zip(runs, labels):
        plots = r.run_dir / "plots"
        expected = []
        if r.history is not None:
            expected.append("learning_curves.png")
        if r.probs is not None:
            expected += ["confusion_matrices.png", "cooccurrence.png", "per_genre_f1.png"]
        note = ""
        if any(not (plots / name).is_file() for name in expected):
            try:
                write_run_plots(r.run_dir)
            except OutputError as exc:
                note = f"<p class=\"note\">Plots could not be written: {escape(str(exc))}</p>"
        figs = []
        for name in PLOT_NAMES:
            p = plots / name
            if p.is_file():
                b64 = base64.b64encode(p.read_bytes()).decode("ascii")
                figs.append(f"<figure><img src=\"data:image/png;base64,{b64}\" alt=\"{escape(name)}\">"
                            f"<figcaption>{escape(captions.get(name, name))}</figcaption></figure>")
        if r.history is None:
            note += "<p class=\"muted\">No training history (e.g. a model fitted on features): no learning curves.</p>"
        parts.append(f"<h3>{escape(lab)}</h3>{note}<div class=\"plots\">{''.join(figs)}</div>")
    return "".join(parts)


def write_report(run_dirs: list[Path], out_html: str | Path, data_dir: str | Path | None = None,
                 title: str = "movie-genres report", n_samples: int = 24, seed: int = 0) -> Path:
    """One self-contained HTML report comparing runs (all numbers on the validation split). See the module docstring."""
    runs = _runs(run_dirs)
    if not runs:
        raise ValueError("write_report needs at least one run folder")
    labels = run_labels(runs)
    run_list = "".join(
        f"<li><b>{escape(lab)}</b> <span class=\"muted\">{escape(str(r.run_dir))}"
        f"{' · v' + escape(str(r.config['version'])) if r.config.get('version') else ''}</span></li>"
        for r, lab in zip(runs, labels))
    toc = [("comparison", "Comparison"), ("per-genre", "Per-genre F1"), ("data", "Excluded genres & skipped rows")]
    toc += [(k, t) for k, t in (("by_modality", "By input"), ("ablation", "Ablation"))
            if any(isinstance(r.metrics.get(k), dict) and r.metrics[k] for r in runs)]
    toc.append(("plots", "Plots"))
    if data_dir is not None:
        toc.append(("samples", "Sample predictions"))
    body = [
        f"<h1>{escape(title)}</h1>",
        "<p class=\"note\"><b>All numbers are on the validation split</b> (the films held out from training; "
        "thresholds were tuned on it too). There is no separate test split.</p>",
        f"<ul>{run_list}</ul>",
        "<nav class=\"toc\">" + "".join(f"<a href=\"#{k}\">{escape(t)}</a>" for k, t in toc) + "</nav>",
        _comparison_section(runs, labels),
        _per_genre_section(runs, labels),
        _data_section(runs, labels),
        _optional_sections(runs, labels),
        _plots_section(runs, labels),
    ]
    if data_dir is not None:
        with_preds = [r for r in runs if r.probs is not None]
        if with_preds:
            body.append(samples_html(data_dir, with_preds, n=n_samples, seed=seed))
    return write_text(out_html, _page(title, "\n".join(body)))
