"""Per-film prediction latency once the model is loaded (what `movie-genres predict` and the service pay per film).

Usage: python benchmarks/predict_latency.py RUN_DIR [RUN_DIR ...] [--data DIR] [--films N]
Each film is predicted alone from its poster file and overview (decode, encoders, model, thresholds), as a new
request would be; the first call (warm-up) is excluded. Each film is predicted twice, in alternating order: through
the traced single-film graph (what `predict` and the service use), through the Keras model, and through the traced
graph with the encoders run one after another instead of side by side, so the rows share the machine's conditions
(this CPU's speed drifts by tens of percent between minutes). With several runs (e.g. the fp32 and int8 defaults),
each film goes through each run's default path in alternating order instead.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    from movie_genres.data.dataset import load_dataset
    from movie_genres.features.inputs import PretrainedFeatures
    from movie_genres.features.posters import open_poster
    from movie_genres.predictor import Predictor

    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", nargs="+", help="one run (three paths compared) or several (their default paths, alternating)")
    ap.add_argument("--data")
    ap.add_argument("--films", type=int, default=100)
    args = ap.parse_args()
    preds, load_s = [], []
    for run_dir in args.run_dir:
        t = time.perf_counter()
        preds.append(Predictor.load(run_dir))
        load_s.append(time.perf_counter() - t)
    ds = load_dataset(args.data)
    rng = np.random.default_rng(0)
    idx = rng.choice(len(ds), size=min(args.films + 1, len(ds)), replace=False)
    rows: dict[tuple[int, str], list[float]] = {}
    graphs = [pred._single_film_graph() for pred in preds]
    for r, graph in enumerate(graphs):
        traced = "traced graph" if graph else "keras (no traced graph)"
        for path in ([traced, "keras", f"{traced}, encoders in turn"] if len(preds) == 1 else [traced]):
            rows[(r, path)] = []
    for k, i in enumerate(idx):
        poster_path, overview = ds.poster_paths[i], ds.overviews[i]
        order = list(rows) if k % 2 else list(rows)[::-1]
        for r, path in order:
            pred = preds[r]
            pred._graph = graphs[r] if path != "keras" else False
            PretrainedFeatures.SIDE_BY_SIDE = not path.endswith("in turn")
            t = time.perf_counter()
            poster = open_poster(poster_path) if poster_path else None
            pred.predict_one(poster, overview)
            if k:
                rows[(r, path)].append((time.perf_counter() - t) * 1000)
    print("| run | model | path | load s | films | p50 ms | p90 ms | p99 ms |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
    for (r, path), times in rows.items():
        times = np.array(times)
        p50, p90, p99 = np.percentile(times, [50, 90, 99])
        print(f"| {preds[r].run_dir} | {preds[r].model_name} | {path} | {load_s[r]:.1f} | {len(times)} | {p50:.1f} | {p90:.1f} | {p99:.1f} |")


if __name__ == "__main__":
    main()
