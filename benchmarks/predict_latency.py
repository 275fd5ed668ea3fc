"""Per-film prediction latency once the model is loaded (what `movie-genres predict` and the service pay per film).

Usage: python benchmarks/predict_latency.py RUN_DIR [--data DIR] [--films N]
Each film is predicted alone from its poster file and overview (decode, encoders, model, thresholds), as a new
request would be; the first call (warm-up) is excluded.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    from movie_genres.data.dataset import load_dataset
    from movie_genres.features.posters import open_poster
    from movie_genres.predictor import Predictor

    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--data")
    ap.add_argument("--films", type=int, default=100)
    args = ap.parse_args()
    t = time.perf_counter()
    pred = Predictor.load(args.run_dir)
    load_s = time.perf_counter() - t
    ds = load_dataset(args.data)
    rng = np.random.default_rng(0)
    idx = rng.choice(len(ds), size=min(args.films + 1, len(ds)), replace=False)
    times = []
    for k, i in enumerate(idx):
        t = time.perf_counter()
        poster = open_poster(ds.poster_paths[i]) if ds.poster_paths[i] else None
        pred.predict_one(poster, ds.overviews[i])
        if k:
            times.append((time.perf_counter() - t) * 1000)
    times = np.array(times)
    print(f"| run | model | load s | films | p50 ms | p90 ms | p99 ms |\n| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {pred.run_dir} | {pred.model_name} | {load_s:.1f} | {len(times)} | {np.percentile(times, 50):.1f} | {np.percentile(times, 90):.1f} | {np.percentile(times, 99):.1f} |")


if __name__ == "__main__":
    main()
