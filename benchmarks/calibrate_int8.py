"""Record the int8 calibration of the poster encoders (``features/encoders/calibration/<encoder>.json``).

The calibration posters are training posters only: films in the training split for every seed the measurements use
(seeds 0-9 and 42, val_fraction 0.2), ``--n`` of them drawn with a fixed seed. Their Ids and the MinMax activation
ranges of the fp32 graph over them are written; the int8 graph is then made from the fp32 graph and those ranges on
any machine (features/encoders/quantize.py), so the dataset is needed only here.

    .venv/bin/python benchmarks/calibrate_int8.py --data ../shared/data/multimodal-imdb --n 64
"""
from __future__ import annotations

import argparse

import numpy as np

from movie_genres.data.dataset import load_dataset
from movie_genres.data.split import stratified_split
from movie_genres.features.encoders import base, get_encoder
from movie_genres.features.encoders.quantize import calibrate, write_calibration

SEEDS = list(range(10)) + [42]
ENCODERS = ["effnet-lite0", "nsfw-resnet50"]


def fp32_graph(name: str) -> tuple[bytes, str]:
    enc = get_encoder(name).load()
    if hasattr(enc, "fp32_graph"):
        data = enc.fp32_graph()
    else:
        data = base.onnx_cache_path(enc).read_bytes()
    return data, enc.session.get_inputs()[0].name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/multimodal-imdb")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    ds = load_dataset(args.data)
    train = None
    for seed in SEEDS:
        idx, _ = stratified_split(ds.labels, 0.2, seed)
        train = set(idx.tolist()) if train is None else train & set(idx.tolist())
    pool = sorted(i for i in train if ds.poster_paths[i] is not None)
    chosen = sorted(np.random.default_rng(0).choice(pool, size=min(args.n, len(pool)), replace=False).tolist())
    ids = [ds.ids[i] for i in chosen]
    how = (f"{len(ids)} posters drawn (numpy default_rng(0)) from the {len(pool)} films in the training split of every "
           f"seed in {SEEDS} (val_fraction 0.2) of {ds.root.name}")
    print(how)
    for name in ENCODERS:
        enc = get_encoder(name)
        data, input_name = fp32_graph(name)
        pixels = [enc.preprocess(base.poster_image(ds.poster_paths[i])) for i in chosen]
        batches = [np.stack(pixels[s : s + args.batch]) for s in range(0, len(pixels), args.batch)]
        ranges = calibrate(data, input_name, batches)
        path = write_calibration(name, enc.version, ids, ranges, how)
        print(f"{name}: {len(ranges)} tensor ranges -> {path}")


if __name__ == "__main__":
    main()
