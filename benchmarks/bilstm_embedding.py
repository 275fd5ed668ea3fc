"""The BiLSTM's starting embedding and regularisation, compared on the validation split (one model per variant).

Usage: python benchmarks/bilstm_embedding.py [--data DIR] [VARIANT ...]   (no variant: all of them)

Every variant is one BiLSTM(128) over the same tokens, split and seed, trained as the project trains it (oversampling,
BCE, Adam, batch 64, batches cut at their longest overview) with early stopping (patience 2, best weights restored);
thresholds are cross-fitted on the validation films. Variants: ``random`` (the original start), ``minilm-S`` (distilled
MiniLM word vectors scaled to standard deviation S) and regularisation of the random start (spatial dropout, max-pooling
over time, fewer units, lower learning rate, no oversampling). Prints one JSON line per variant.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

VARIANTS = {
    "random": {},
    "minilm-0.05": {"init": 0.05},
    "minilm-0.2": {"init": 0.2},
    "minilm-0.5": {"init": 0.5},
    "minilm-1.0": {"init": 1.0},
    "spatial-dropout-0.3": {"sdrop": 0.3},
    "maxpool+spatial-dropout": {"pool": "max", "sdrop": 0.3},
    "maxpool+spatial-dropout+64-units": {"pool": "max", "sdrop": 0.3, "units": 64},
    "lr-5e-4+maxpool+spatial-dropout": {"pool": "max", "sdrop": 0.3, "lr": 5e-4},
    "no-oversampling": {"oversample": False},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--patience", type=int, default=2)
    ap.add_argument("variants", nargs="*", default=list(VARIANTS))
    args = ap.parse_args()

    import movie_genres  # noqa: F401  (selects the torch backend before Keras loads)
    # isort: split

    import keras
    from keras import layers

    from movie_genres.config import make_config
    from movie_genres.data.dataset import resolve_data_dir
    from movie_genres.evaluation.metrics import full_metrics, tune_thresholds
    from movie_genres.features.word_vectors import distilled_embeddings
    from movie_genres.models.losses import MultiLabelLoss
    from movie_genres.training import train as T
    from movie_genres.training.batches import EpochSetter, TrainBatches, oversample_index, trim_padding

    cfg = make_config(model="bilstm")
    T._set_threads(cfg)
    prep = T.prepare(cfg, resolve_data_dir(args.data), Path(tempfile.mkdtemp()))
    y, tr, va, X = prep.ds.labels, prep.train_idx, prep.val_idx, prep.inputs["overview"]
    vocab = min(cfg.vocab_size, prep.featurizer.vectorizer.vocabulary_size)
    words = prep.featurizer.vectorizer.words(vocab)
    xv = trim_padding({"overview": X[va]})["overview"]

    for name in args.variants:
        v = VARIANTS[name]
        keras.utils.set_random_seed(cfg.seed)
        inp = keras.Input((None,), dtype="int32")
        emb = layers.Embedding(vocab, cfg.embedding_dim, mask_zero=True)
        x = emb(inp)
        if v.get("sdrop"):
            x = layers.SpatialDropout1D(v["sdrop"])(x)
        if v.get("pool") == "max":
            x = layers.GlobalMaxPooling1D()(layers.Bidirectional(layers.LSTM(v.get("units", 128), return_sequences=True))(x))
        else:
            x = layers.Bidirectional(layers.LSTM(v.get("units", 128)))(x)
        x = layers.Dropout(0.5)(layers.Dense(128, activation="relu")(layers.Dropout(0.5)(x)))
        model = keras.Model(inp, layers.Dense(y.shape[1], activation="sigmoid")(x))
        if "init" in v:
            emb.embeddings.assign(distilled_embeddings(words, cfg.embedding_dim, cfg.text_encoder, cfg.cache_dir, v["init"], cfg.seed))
        model.compile(keras.optimizers.Adam(v.get("lr", 1e-3)), MultiLabelLoss("bce", genre_mask=prep.trained.astype(float).tolist()))
        index = oversample_index(y[tr], prep.trained, cfg.oversample_max) if v.get("oversample", True) else None
        batches = TrainBatches({"overview": X[tr]}, y[tr], cfg.batch_size, cfg.seed, index, input_names=["overview"])
        stop = keras.callbacks.EarlyStopping(patience=args.patience, restore_best_weights=True)
        t0 = time.time()
        hist = model.fit(batches, validation_data=(xv, y[va]), validation_batch_size=256, epochs=cfg.epochs,
                         callbacks=[EpochSetter(batches), stop], verbose=0)
        p = model.predict(xv, batch_size=256, verbose=0)
        p[:, ~prep.trained] = 0
        m = full_metrics(prep.ds.genres, y[va], p, tune_thresholds(y[va], p, prep.trained), prep.trained)
        print(json.dumps({"variant": name, "micro_f1": round(m["tuned"]["micro_f1"], 4), "macro_f1": round(m["tuned"]["macro_f1"], 4),
                          "map": round(m["tuned"]["map_macro"], 4), "micro_p_at_0_5": round(m["at_0_5"]["micro_precision"], 4),
                          "epochs": len(hist.history["loss"]), "seconds": round(time.time() - t0)}), flush=True)


if __name__ == "__main__":
    main()
