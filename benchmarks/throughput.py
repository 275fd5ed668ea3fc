"""Poster decode throughput and seconds per training epoch for each original model.

Usage: python benchmarks/throughput.py [--data DIR] [--steps N] [--models cnn,bilstm,bilstm-original]

- Poster decode: movie-genres' path (Pillow draft() + resize to 64x64 in worker processes) against the limit, a plain
  full-size JPEG decode of the same files in one process and in the same number of processes.
- Epoch time: N training steps of batch 64 on real inputs, extrapolated to one epoch of the 80% training split
  (oversampling included), after one warm-up step.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def _raw_decode(path) -> int:
    with Image.open(path) as img:
        img.load()
        return img.size[0]


def bench_decode(paths, workers: int) -> dict:
    from movie_genres.features.posters import decode_posters

    t = time.perf_counter()
    for p in paths:
        _raw_decode(p)
    raw1 = time.perf_counter() - t
    t = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_raw_decode, paths, chunksize=64))
    raw_n = time.perf_counter() - t
    t = time.perf_counter()
    decode_posters(paths, 64, cache_dir=None, workers=workers, progress=False)
    ours = time.perf_counter() - t
    n = len(paths)
    return {"posters": n, "raw decode, 1 process (posters/s)": n / raw1, f"raw decode, {workers} processes (posters/s)": n / raw_n,
            f"movie-genres decode+resize 64x64, {workers} processes (posters/s)": n / ours}


def bench_epoch(model_name: str, data, steps: int) -> dict:
    from movie_genres.config import make_config
    from movie_genres.data.dataset import load_dataset
    from movie_genres.data.split import stratified_split
    from movie_genres.models.registry import build_model, make_featurizer
    from movie_genres.training.batches import TrainBatches, oversample_index
    from movie_genres.training.train import _compile, input_names

    overrides = {"lstm_units": (256, 128), "recurrent_dropout": 0.2} if model_name == "bilstm-original" else {}
    cfg = make_config(model=model_name.split("-")[0], **overrides)
    ds = load_dataset(data)
    tr, _ = stratified_split(ds.labels, cfg.val_fraction, cfg.seed)
    feat = make_featurizer(cfg).fit([ds.poster_paths[i] for i in tr], [ds.overviews[i] for i in tr])
    inputs, usable, _ = feat.transform([ds.poster_paths[i] for i in tr], [ds.overviews[i] for i in tr], progress=False)
    if "poster" in inputs:
        inputs["poster"] = inputs["poster"].astype(np.float32) / 255
    trained = ds.labels[tr].sum(0) >= cfg.min_positives
    model = _compile(build_model(cfg, feat, 25), cfg, trained, None)
    index = oversample_index(ds.labels[tr], trained, cfg.oversample_max)
    batches = TrainBatches(inputs, ds.labels[tr], cfg.batch_size, cfg.seed, index, augment=cfg.augment, input_names=input_names(model))
    x, y = batches[0]
    model.train_on_batch(x, y)  # warm-up
    t = time.perf_counter()
    for i in range(1, steps + 1):
        x, y = batches[i]
        model.train_on_batch(x, y)
    per_step = (time.perf_counter() - t) / steps
    return {"model": model_name, "params": model.count_params(), "steps/epoch": len(batches), "s/step": per_step, "s/epoch (est.)": per_step * len(batches)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--models", default="cnn,bilstm,bilstm-original")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    from movie_genres.data.dataset import load_dataset

    ds = load_dataset(args.data)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    paths = [p for p in ds.poster_paths if p is not None]
    d = bench_decode(paths, args.workers)
    print("\n| poster decode | posters/s |\n| --- | --- |")
    for k, v in d.items():
        if k != "posters":
            print(f"| {k} | {v:,.0f} |")
    print(f"\n({d['posters']} posters)\n\n| model | params | steps/epoch | s/step | s/epoch (est.) |\n| --- | --- | --- | --- | --- |")
    for name in args.models.split(","):
        r = bench_epoch(name, args.data, args.steps)
        print(f"| {r['model']} | {r['params']:,} | {r['steps/epoch']} | {r['s/step']:.3f} | {r['s/epoch (est.)']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
