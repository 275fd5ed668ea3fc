"""Latency of one explanation (``mg.explain``): words, poster grid and per-modality probabilities for one film.

Usage: python benchmarks/explain_latency.py RUN_DIR [--data DIR] [--films N] [--grid ROWSxCOLS]

Validation films of the run with a poster and an overview, one at a time as a request would come: poster decoded from
its file, then every decided genre explained. The first film (warm-up) is excluded. Also printed: the featurizer and
``scores`` calls per explanation and the words and cells explained.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def main() -> None:
    import pandas as pd

    from movie_genres.data.dataset import load_dataset
    from movie_genres.explanation import GRID, explain
    from movie_genres.features.posters import open_poster
    from movie_genres.io import read_json
    from movie_genres.predictor import Predictor

    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--data")
    ap.add_argument("--films", type=int, default=30)
    ap.add_argument("--grid", default="x".join(map(str, GRID)))
    args = ap.parse_args()
    grid = tuple(int(v) for v in args.grid.lower().split("x"))

    t = time.perf_counter()
    pred = Predictor.load(args.run_dir)
    load_s = time.perf_counter() - t
    ds = load_dataset(args.data or read_json(pred.run_dir / "config.json").get("data_dir"))
    split = pd.read_csv(pred.run_dir / "split.csv", dtype=str)
    val = set(split.loc[split["split"] == "val", "Id"])
    rows = [i for i, fid in enumerate(ds.ids) if fid in val and ds.overviews[i] and ds.poster_paths[i] is not None]
    chosen = np.random.default_rng(0).choice(rows, size=min(args.films + 1, len(rows)), replace=False)

    calls = {"transform": 0, "scores": 0}
    transform, scores = pred.transform, pred.scores

    def counted(name, fn):
        def call(*a, **kw):
            calls[name] += 1
            return fn(*a, **kw)
        return call

    pred.transform, pred.scores = counted("transform", transform), counted("scores", scores)
    times, words, per_call = [], [], []
    for k, i in enumerate(chosen):
        before = dict(calls)
        t = time.perf_counter()
        out = explain(pred, open_poster(ds.poster_paths[i]), ds.overviews[i], grid=grid)
        if k:
            times.append((time.perf_counter() - t) * 1000)
            words.append(len(out["words"]))
            per_call.append((calls["transform"] - before["transform"], calls["scores"] - before["scores"]))
    times = np.array(times)
    tr, sc = np.array(per_call).mean(axis=0)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; load {load_s:.1f} s")
    print("| run | model | grid | films | words (mean) | featurizer / scores calls | p50 ms | p90 ms | max ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {pred.run_dir} | {pred.model_name} | {grid[0]}x{grid[1]} | {len(times)} | {np.mean(words):.1f} | {tr:.1f} / {sc:.0f} "
          f"| {np.percentile(times, 50):.0f} | {np.percentile(times, 90):.0f} | {times.max():.0f} |")


if __name__ == "__main__":
    main()
