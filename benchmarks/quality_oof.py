"""Out-of-fold first-stage probabilities on the training films, for stacking experiments (docs/BENCHMARKS.md,
"Quality round 2").

For one model (text, image, early, gmu) on one text encoder, the training films are cut into 5 folds; a model is fitted
exactly as ``train`` fits it on 4 of them (early stopping on the validation split, as the full model) and scores the
fifth. The validation films get the full run's probabilities. Writes ``OUT/<model>-<encoder>.npz`` with ``train_idx``,
``oof`` (train films x genres), ``val_idx``, ``val`` (validation films x genres).

    MOVIE_GENRES_CACHE=... python benchmarks/quality_oof.py RUNS RUNS/oof MODEL ENCODER
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import movie_genres  # noqa: F401  (first: sets the Keras backend)


def main(runs_root: str, out: str, model: str, encoder: str, folds: int = 5) -> None:
    import keras
    from sklearn.model_selection import KFold

    from movie_genres.config import make_config
    from movie_genres.data.dataset import resolve_data_dir
    from movie_genres.models.inference import predict_proba_arrays
    from movie_genres.models.registry import register_layers
    from movie_genres.training.fit import fit_keras, set_threads
    from movie_genres.training.prepare import prepare

    register_layers()
    cfg = make_config(model=model, text_encoder=encoder, epochs=make_config().head_epochs, verbose=0)
    data_dir = resolve_data_dir(None)
    with tempfile.TemporaryDirectory() as tmp:
        prep = prepare(cfg, data_dir, Path(tmp))
        full_tr = prep.train_idx.copy()
        oof = np.zeros((len(full_tr), len(prep.ds.genres)), dtype=np.float32)
        t0 = time.perf_counter()
        for k, (fit_pos, score_pos) in enumerate(KFold(folds, shuffle=True, random_state=cfg.seed).split(full_tr)):
            keras.utils.set_random_seed(cfg.seed)
            set_threads(cfg)
            prep.train_idx = full_tr[fit_pos]
            fold_dir = Path(tmp) / f"fold{k}"
            fold_dir.mkdir()
            m = fit_keras(cfg, prep, fold_dir)
            oof[score_pos] = predict_proba_arrays(m, prep.inputs_of(full_tr[score_pos]))
            print(f"{model}-{encoder} fold {k}: {time.perf_counter() - t0:.0f}s", flush=True)
        full = keras.saving.load_model(Path(runs_root) / encoder / model / "model.keras", compile=False)
        val = predict_proba_arrays(full, prep.inputs_of(prep.val_idx))
        np.savez(Path(out) / f"{model}-{encoder}.npz", train_idx=full_tr, oof=oof, val_idx=prep.val_idx, val=val,
                 seconds=time.perf_counter() - t0)


if __name__ == "__main__":
    main(*sys.argv[1:5])
