"""fp32 vs int8 encoders on the same films: cosine of the features (min / mean) and encode time, in one run.

Films are validation films of the default split (seed 42), so none of them calibrated the int8 poster graphs.

    MOVIE_GENRES_THREADS=1 .venv/bin/python benchmarks/int8_parity.py --n 96
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from movie_genres.data.dataset import load_dataset
from movie_genres.data.split import stratified_split
from movie_genres.features.encoders import get_encoder, with_precision
from movie_genres.features.encoders.base import poster_image


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def timed(enc, items, repeats: int) -> tuple[np.ndarray, float, float]:
    """Features, best wall seconds and best CPU seconds (this process: with 1 thread, the encoder's own work, which
    other jobs on a shared machine disturb far less than the wall clock)."""
    enc.load()
    enc.encode(items[: enc.batch_size])  # warm
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = enc.encode(items)
        best, best_cpu = min(best, time.perf_counter() - t0), min(best_cpu, time.process_time() - c0)
    return out, best, best_cpu


def validation_films(data: str, n: int) -> tuple[list[str], list]:
    """Overviews and decoded posters of the first ``n`` validation films (seed 42) that have both."""
    ds = load_dataset(data)
    _, val = stratified_split(ds.labels, 0.2, 42)
    val = [i for i in val if ds.poster_paths[i] is not None and ds.overviews[i]][:n]
    return [ds.overviews[i] for i in val], [poster_image(ds.poster_paths[i]) for i in val]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/multimodal-imdb")
    ap.add_argument("--n", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--encoders", default="minilm,effnet-lite0,nsfw-resnet50")
    args = ap.parse_args()
    overviews, posters = validation_films(args.data, args.n)
    rows = []
    for name in args.encoders.split(","):
        fp32, int8 = get_encoder(name), get_encoder(with_precision(name, "int8"))
        items = overviews if fp32.modality == "overview" else posters
        a, ta, ca = timed(fp32, items, args.repeats)
        b, tb, cb = timed(int8, items, args.repeats)
        c = cosine(a, b)
        row = {"encoder": name, "films": len(items), "threads": fp32.threads, "batch": [fp32.batch_size, int8.batch_size],
               "fp32_ms_per_film": 1000 * ta / len(items),
               "int8_ms_per_film": 1000 * tb / len(items), "speedup": ta / tb, "fp32_cpu_ms_per_film": 1000 * ca / len(items),
               "int8_cpu_ms_per_film": 1000 * cb / len(items), "speedup_cpu": ca / cb, "cos_min": float(c.min()),
               "cos_mean": float(c.mean())}
        rows.append(row)
        print(json.dumps(row))


if __name__ == "__main__":
    main()
