"""Latency of one explanation (``mg.explain``): words, poster grid and per-modality probabilities for one film.

Usage: python benchmarks/explain_latency.py RUN_DIR [--data DIR] [--films N] [--grid ROWSxCOLS[,ROWSxCOLS...]]

Validation films of the run with a poster and an overview, one at a time as a request would come: poster decoded from
its file, then every decided genre explained. The first film (warm-up) is excluded. Several grids are timed on each
film in alternating order, so their rows share the machine's conditions. Also printed: the featurizer and ``scores``
calls per explanation, the words explained, and the CPU time of this process (all its threads) per explanation,
which another process on the machine changes less than the wall time.
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
    grids = [tuple(int(v) for v in g.lower().split("x")) for g in args.grid.split(",")]

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
    times = {g: [] for g in grids}
    cpu = {g: [] for g in grids}
    per_call = {g: [] for g in grids}
    words = []
    for k, i in enumerate(chosen):
        poster_path, overview = ds.poster_paths[i], ds.overviews[i]
        for g in grids if k % 2 else grids[::-1]:
            before = dict(calls)
            t, c = time.perf_counter(), time.process_time()
            out = explain(pred, open_poster(poster_path), overview, grid=g)
            if k:
                times[g].append((time.perf_counter() - t) * 1000)
                cpu[g].append((time.process_time() - c) * 1000)
                per_call[g].append((calls["transform"] - before["transform"], calls["scores"] - before["scores"]))
        if k:
            words.append(len(out["words"]))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} at the end; run load {load_s:.1f} s")
    print("| run | model | grid | films | words (mean) | featurizer / scores calls | p50 ms | p90 ms | max ms | CPU ms (p50) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for g in grids:
        ts = np.array(times[g])
        tr, sc = np.array(per_call[g]).mean(axis=0)
        print(f"| {pred.run_dir} | {pred.model_name} | {g[0]}x{g[1]} | {len(ts)} | {np.mean(words):.1f} | {tr:.1f} / {sc:.0f} "
              f"| {np.percentile(ts, 50):.0f} | {np.percentile(ts, 90):.0f} | {ts.max():.0f} | {np.percentile(cpu[g], 50):.0f} |")

if __name__ == "__main__":
    main()
