"""Encode time per film of each encoder at several batch sizes and thread counts, fp32 and int8, in one run.

The batch sizes and threads the encoders use (``batch_size`` / ``int8_batch_size`` in ``features/encoders/``) are
chosen from this table. Films are validation films of the default split (seed 42); posters are decoded before timing,
so only the encoder's own work is timed. Each cell is the best of ``--repeats`` passes (wall and CPU seconds of this
process). The int8 transformers are batch-invariant only at batch 1 (dynamic quantization ranges span the batch), so
their other batch sizes are shown for the cost of that choice only.

    .venv/bin/python benchmarks/encoder_batches.py --n 64 --batches 1,4,8,16 --threads 1,2
"""
from __future__ import annotations

import argparse
import json
import time

from int8_parity import validation_films  # the same films (benchmarks/ is on the path when run as a script)

from movie_genres.features.encoders import get_encoder, with_precision


def timed(enc, items, repeats: int) -> tuple[float, float]:
    enc.encode(items[: enc.batch_size])  # warm at this batch size
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        enc.encode(items)
        best, best_cpu = min(best, time.perf_counter() - t0), min(best_cpu, time.process_time() - c0)
    return best, best_cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/multimodal-imdb")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--encoders", default="minilm,effnet-lite0,nsfw-resnet50")
    ap.add_argument("--precisions", default="fp32,int8")
    ap.add_argument("--batches", default="1,4,8,16,32")
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    overviews, posters = validation_films(args.data, args.n)
    rows = []
    print("| encoder | precision | threads | batch | ms a film (wall) | CPU ms a film |\n| --- | --- | --- | --- | --- | --- |")
    for name in args.encoders.split(","):
        for precision in args.precisions.split(","):
            enc = get_encoder(with_precision(name, precision) if precision != "fp32" else name)
            items = overviews if enc.modality == "overview" else posters
            default_batch = enc.batch_size
            for threads in map(int, args.threads.split(",")):
                enc.threads, enc._loaded = threads, False  # reload the session with this thread count
                enc.load()
                for batch in map(int, args.batches.split(",")):
                    enc.batch_size = batch
                    wall, cpu = timed(enc, items, args.repeats)
                    row = {"encoder": name, "precision": precision, "threads": threads, "batch": batch,
                           "default_batch": default_batch, "ms": 1000 * wall / len(items), "cpu_ms": 1000 * cpu / len(items)}
                    rows.append(row)
                    mark = " (default)" if batch == default_batch else ""
                    print(f"| {name} | {precision} | {threads} | {batch}{mark} | {row['ms']:.1f} | {row['cpu_ms']:.1f} |", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
