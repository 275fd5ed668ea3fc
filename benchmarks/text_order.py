"""Overviews encoded in the order given against by length (``Encoder.batch_order``), alternating in one process.

    python benchmarks/text_order.py [--encoder mpnet|minilm] [--films 384] [--threads 1] [--repeats 2]

Prints seconds for each order, their ratio and the largest difference between the two sets of features.
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

from movie_genres.features.encoders import get_encoder

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "multimodal-imdb"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="mpnet")
    ap.add_argument("--films", type=int, default=384)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--data", default=str(SHARED))
    args = ap.parse_args()
    rows = list(csv.DictReader(open(Path(args.data) / "IMDB_overview_genres.csv", encoding="utf-8")))
    texts = [r["Overview"] for r in rows[: args.films]]
    enc = get_encoder(args.encoder)
    enc.threads = args.threads
    enc.load()
    enc.encode(texts[:8])  # warm up
    bs = enc.batch_size
    for _ in range(args.repeats):
        t = time.perf_counter()
        given = np.concatenate([enc._encode(texts[i : i + bs]) for i in range(0, len(texts), bs)])
        t_given = time.perf_counter() - t
        t = time.perf_counter()
        by_length = enc.encode(texts)
        t_sorted = time.perf_counter() - t
        print(f"{args.encoder}: {len(texts)} overviews, batches of {bs}, {args.threads} thread(s): given order "
              f"{t_given:.1f} s, by length {t_sorted:.1f} s, ratio {t_given / t_sorted:.2f}; "
              f"max feature difference {np.abs(given - by_length).max():.1e}")


if __name__ == "__main__":
    main()
