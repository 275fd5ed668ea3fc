"""Head variants on the validation split (docs/BENCHMARKS.md, "Quality round 2"): a model fitted exactly as
``train`` fits it, on other text features (``mpnet+minilm``: both encoders' embeddings side by side) or other settings.

    MOVIE_GENRES_CACHE=... python benchmarks/quality_heads.py OUT MODEL TEXT [key=value ...] [fit_seed=N]
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import movie_genres  # noqa: F401  (first: sets the Keras backend)


def main(out: str, model: str, text: str, *overrides: str) -> None:
    import keras

    from movie_genres.config import make_config, parse_overrides
    from movie_genres.data.dataset import resolve_data_dir
    from movie_genres.evaluation.metrics import full_metrics
    from movie_genres.features.inputs import PretrainedFeatures
    from movie_genres.models import heads
    from movie_genres.models.inference import predict_proba_arrays
    from movie_genres.training.fit import compile_model, fit_keras, set_threads
    from movie_genres.training.prepare import prepare

    encs = text.split("+")
    keys = parse_overrides(list(overrides))
    fit_seed = keys.pop("fit_seed", None)  # another seed for the weights and batches, the same split
    cfg = make_config(model=model, text_encoder=encs[0], epochs=make_config().head_epochs, verbose=0, **keys)
    with tempfile.TemporaryDirectory() as tmp:
        prep = prepare(cfg, resolve_data_dir(None), Path(tmp))
        if len(encs) > 1:
            extra = [PretrainedFeatures(e, ()).transform(prep.ds.poster_paths, prep.ds.overviews, progress=False)[0]["text_features"] for e in encs[1:]]
            prep.inputs["text_features"] = np.concatenate([prep.inputs["text_features"], *extra], axis=1)
        d_t = prep.inputs["text_features"].shape[1] if "text_features" in prep.inputs else 0
        d_v = prep.inputs["image_features"].shape[1] if "image_features" in prep.inputs else 0
        if fit_seed is not None:
            import dataclasses

            cfg = dataclasses.replace(cfg, seed=int(fit_seed))
            prep.cfg = cfg
        keras.utils.set_random_seed(cfg.seed)
        set_threads(cfg)
        build = {"text": lambda: heads.build_feature_head("text_features", d_t, 25, cfg.hidden_units, cfg.dropout, "text"),
                 "early": lambda: heads.build_early_fusion(d_t, d_v, 25, cfg.hidden_units, cfg.dropout),
                 "gmu": lambda: heads.build_gmu(d_t, d_v, 25, cfg.hidden_units, cfg.dropout)}[model]
        t0 = time.perf_counter()
        m = fit_keras(cfg, prep, Path(tmp), model=compile_model(build(), cfg, prep))
        va = prep.val_idx
        p = predict_proba_arrays(m, prep.inputs_of(va))
        p[:, ~prep.trained] = 0
        t = full_metrics(prep.ds.genres, prep.ds.labels[va], p, np.full(25, 0.5), prep.trained)["tuned"]
        name = f"{model}-{text}" + "".join(f"-{o}" for o in overrides)
        print(f"RESULT {name} {t['micro_f1']:.3f} {t['macro_f1']:.3f} {t['map_macro']:.3f} {time.perf_counter() - t0:.0f}s", flush=True)
        np.savez(Path(out) / f"{name}.npz", val_idx=va, val=p, ids=np.array([prep.ds.ids[i] for i in va]))


if __name__ == "__main__":
    main(*sys.argv[1:])
