"""Your labels, measured: the shared films relabelled in other taxonomies, trained from a manifest and scored on films
the run never saw.

For each taxonomy the shared dataset's films are relabelled (IMDb genres -> the taxonomy's names, films left without a
label dropped), one film in five is held out (stratified, seed 0), the rest written as a manifest that ``train`` splits
80/20 itself; ``evaluate --manifest`` then scores the held-out films, which no part of training saw.

- ``tmdb``: TMDB's genre names ("Science Fiction", "Music", ...), a Parquet manifest with ``list<string>`` labels;
- ``moods``: five coarse labels with spaces and non-ASCII letters, a CSV manifest with ``A|B`` labels.

Usage: python benchmarks/taxonomies.py OUT_DIR [--model early] [--data ../shared/data/multimodal-imdb]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

TMDB = {"Action": "Action", "Adventure": "Adventure", "Animation": "Animation", "Biography": "History",
        "Comedy": "Comedy", "Crime": "Crime", "Documentary": "Documentary", "Drama": "Drama", "Family": "Family",
        "Fantasy": "Fantasy", "History": "History", "Horror": "Horror", "Music": "Music", "Musical": "Music",
        "Mystery": "Mystery", "Romance": "Romance", "Sci-Fi": "Science Fiction", "Thriller": "Thriller", "War": "War",
        "Western": "Western"}
MOODS = {"Action": "Frissons", "Thriller": "Frissons", "Crime": "Frissons", "Horror": "Frissons", "Mystery": "Frissons",
         "War": "Frissons", "Western": "Frissons", "Comedy": "Rires", "Animation": "Rires", "Family": "Rires",
         "Romance": "Cœurs", "Drama": "Cœurs", "Music": "Cœurs", "Musical": "Cœurs", "Sci-Fi": "Mondes imaginaires",
         "Fantasy": "Mondes imaginaires", "Adventure": "Mondes imaginaires", "Biography": "Histoires vraies",
         "History": "Histoires vraies", "Documentary": "Histoires vraies", "Sport": "Histoires vraies"}


def relabel(data: Path, mapping: dict[str, str]) -> pd.DataFrame:
    from movie_genres.data.dataset import load_dataset

    ds = load_dataset(data)
    rows = []
    for i, fid in enumerate(ds.ids):
        labels = sorted({mapping[g] for g, v in zip(ds.genres, ds.labels[i]) if v and g in mapping})
        if labels:
            poster = ds.poster_paths[i]
            rows.append({"Id": fid, "poster": str(poster.resolve()) if poster else "", "overview": ds.overviews[i], "genres": labels})
    return pd.DataFrame(rows)


def held_out(frame: pd.DataFrame) -> np.ndarray:
    from movie_genres.data.split import stratified_split

    names = sorted({g for labels in frame["genres"] for g in labels})
    y = np.array([[g in labels for g in names] for labels in frame["genres"]], dtype=np.float32)
    _, other = stratified_split(y, 0.2, 0)
    mask = np.zeros(len(frame), dtype=bool)
    mask[other] = True
    return mask


def main() -> None:
    import movie_genres as mg

    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--model", default="early")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/multimodal-imdb"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, mapping, fmt in (("tmdb", TMDB, "parquet"), ("moods", MOODS, "csv")):
        frame = relabel(args.data, mapping)
        other = held_out(frame)
        paths = {}
        for part, rows in (("train", frame[~other]), ("other", frame[other])):
            path = args.out / f"{name}-{part}.{fmt}"
            if fmt == "csv":
                rows.assign(genres=rows["genres"].map("|".join)).to_csv(path, index=False)
            else:
                rows.to_parquet(path, index=False)
            paths[part] = path
        t0 = time.perf_counter()
        run = mg.train(args.model, paths["train"], args.out / f"{name}-{args.model}")
        seconds = time.perf_counter() - t0
        val = json.loads((run / "metrics.json").read_text())
        m = mg.evaluate(run, paths["other"], args.out / f"{name}-other.json")
        best_baseline = max(b["micro_f1"] for b in m["baselines"].values())
        results[name] = {
            "labels": json.loads((run / "genres.json").read_text())["genres"],
            "films": {"train manifest": int((~other).sum()), "held out": int(other.sum())},
            "validation (cross-fitted)": {k: round(val["tuned"][k], 3) for k in ("micro_f1", "macro_f1", "map_macro")},
            "held out": {k: round(m[k], 3) for k in ("micro_f1", "macro_f1", "map_macro")},
            "held out constant baseline micro_f1": round(best_baseline, 3),
            "ece": {"validation": val.get("calibration"), "held out": m["calibration"]},
            "train_seconds": round(seconds, 1),
        }
        print(json.dumps({name: results[name]}, indent=2, ensure_ascii=False), flush=True)
    (args.out / "taxonomies.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
