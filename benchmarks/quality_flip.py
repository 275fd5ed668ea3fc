"""Poster features of every film's poster mirrored left-right, for flip test-time averaging (docs/BENCHMARKS.md,
"Quality round 2"). Writes ``OUT/flip_features.npz``: ``ids`` and ``image_features`` (EfficientNet-Lite0 +
ResNet-50-1by2, stacked as the ``image`` featurizer stacks them; zeros where a poster does not decode).

    MOVIE_GENRES_CACHE=... python benchmarks/quality_flip.py OUT
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

import movie_genres  # noqa: F401  (first: sets the Keras backend)


def main(out: str) -> None:
    from PIL import ImageOps

    from movie_genres.data.dataset import load_dataset, resolve_data_dir
    from movie_genres.features.encoders import get_encoder
    from movie_genres.features.posters import PosterError, open_poster

    ds = load_dataset(resolve_data_dir(None))
    encs = [get_encoder(n) for n in ("effnet-lite0", "nsfw-resnet50")]
    feats = np.zeros((len(ds.ids), sum(e.dim for e in encs)), np.float32)
    t0 = time.perf_counter()
    for s in range(0, len(ds.ids), 32):
        idx, ims = [], []
        for i in range(s, min(s + 32, len(ds.ids))):
            try:
                ims.append(ImageOps.mirror(open_poster(ds.poster_paths[i])))
                idx.append(i)
            except PosterError:
                pass
        if ims:
            feats[idx] = np.concatenate([e.encode(ims) for e in encs], axis=1)
        if s % 640 == 0:
            print(f"{s} posters, {time.perf_counter() - t0:.0f}s", flush=True)
    np.savez(Path(out) / "flip_features.npz", ids=np.array(ds.ids), image_features=feats)
    print(f"done in {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main(sys.argv[1])
