"""Fitting one Keras model on prepared inputs: compile, start (or resume from the checkpoint), early-stopped fit."""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np

from movie_genres import runs
from movie_genres.config import Config
from movie_genres.io import available_cores
from movie_genres.models.inference import feed, input_names, trim_padding
from movie_genres.models.registry import FUSION, PRETRAINED, build_model
from movie_genres.training.prepare import Prepared

log = logging.getLogger(__name__)


def set_threads(cfg: Config) -> None:
    """Small models train fastest on one thread: with two, every tiny step pays for thread synchronisation
    (measured 1.2 s vs 19.7 s per epoch of the text head on two cores while another process ran)."""
    import keras

    if keras.backend.backend() != "torch":
        return
    import torch

    n = cfg.threads or (1 if cfg.model in PRETRAINED else available_cores())
    torch.set_num_threads(n)


def positive_weights(labels: np.ndarray, cap: float = 10.0) -> np.ndarray:
    """sqrt(negatives / positives) per genre, capped: rare genres count more without swamping the loss."""
    pos = labels.sum(axis=0)
    neg = len(labels) - pos
    return np.clip(np.sqrt(neg / np.maximum(pos, 1)), 1.0, cap).astype(np.float32)


def compile_model(model, cfg: Config, prep: Prepared, trained: np.ndarray | None = None):
    """Compile with the run's loss (genres too rare to learn masked out) and metrics."""
    import keras

    from movie_genres.models.losses import MultiLabelLoss

    trained = prep.trained if trained is None else trained
    pos_weight = positive_weights(prep.ds.labels[prep.train_idx]) if cfg.pos_weight else None
    loss = MultiLabelLoss(cfg.loss, pos_weight=None if pos_weight is None else pos_weight.tolist(), genre_mask=trained.astype(float).tolist())
    model.compile(
        optimizer=keras.optimizers.Adam(cfg.learning_rate),
        loss=loss,
        metrics=[
            keras.metrics.Precision(name="precision"),
            keras.metrics.Recall(name="recall"),
            keras.metrics.AUC(name="auc", multi_label=True, num_labels=len(trained), label_weights=trained.astype("float32").tolist()),
        ],
    )
    return model


def init_embedding(model, cfg: Config, featurizer) -> None:
    """Start the BiLSTM's embedding from distilled encoder word vectors (``embedding_init=minilm``)."""
    if cfg.embedding_init == "random":
        return
    if cfg.embedding_init != "minilm":
        raise ValueError(f"embedding_init must be minilm or random, got {cfg.embedding_init!r}")
    from movie_genres.features.word_vectors import distilled_embeddings

    layer = model.get_layer("embedding")
    words = featurizer.vectorizer.words(layer.input_dim)
    t0 = time.perf_counter()
    # MiniLM, whichever text encoder the fusions read: the key names it, and 10,000 words through mpnet cost the cold
    # job 53 s for a BiLSTM no better (validation micro-F1 0.560 against 0.564, docs/BENCHMARKS.md)
    layer.embeddings.assign(distilled_embeddings(words, layer.output_dim, "minilm", cfg.cache_dir, cfg.embedding_scale, cfg.seed))
    log.info("bilstm: embedding starts from minilm word vectors (%d words, %.1fs)", len(words), time.perf_counter() - t0)


def new_model(cfg: Config, prep: Prepared):
    """The compiled model a fresh run starts from."""
    model = compile_model(build_model(cfg, prep.featurizer, len(prep.ds.genres)), cfg, prep)
    if cfg.model == "bilstm":
        init_embedding(model, cfg, prep.featurizer)
    return model


def resumed_model(cfg: Config, prep: Prepared, run_dir: Path):
    """The compiled model of an interrupted run: its checkpoint's weights and optimizer state."""
    import keras

    from movie_genres.models.registry import register_layers
    from movie_genres.training.callbacks import CKPT_MODEL, CKPT_OPTIMIZER, restore_optimizer

    register_layers()  # the checkpoint may name the package's own layers
    ckpt = run_dir / runs.CHECKPOINT
    trained = np.array(runs.read_genres(run_dir)["trained"], dtype=bool)
    model = compile_model(keras.saving.load_model(ckpt / CKPT_MODEL, compile=False), cfg, prep, trained)
    restore_optimizer(model, ckpt / CKPT_OPTIMIZER)
    return model


def fit_keras(cfg: Config, prep: Prepared, run_dir: Path, model=None, state: dict | None = None, write_run: bool = True):
    """Fit a Keras model on prepared inputs with early stopping; returns the best model.

    ``state`` (an interrupted run's :func:`~movie_genres.training.callbacks.load_state`) continues where it stopped;
    with ``write_run`` every epoch is saved into ``run_dir`` (weights, history, the checkpoint to resume from).
    """
    import keras

    from movie_genres.training.batches import EpochSetter, TrainBatches, oversample_index
    from movie_genres.training.callbacks import ReseedEachEpoch, ResumableEarlyStopping, RunCheckpoint, keras_progress

    y = prep.ds.labels
    tr, va = prep.train_idx, prep.val_idx
    if model is None:
        model = resumed_model(cfg, prep, run_dir) if state else new_model(cfg, prep)
    index = oversample_index(y[tr], prep.trained, cfg.oversample_max) if cfg.oversample else None
    initial_epoch = state["epochs_done"] if state else 0
    batches = TrainBatches(
        prep.inputs_of(tr), y[tr], cfg.batch_size, cfg.seed, index, augment=cfg.augment,
        modality_dropout=cfg.modality_dropout if cfg.model in FUSION else 0.0, epoch=initial_epoch,
        input_names=input_names(model),
    )
    val_inputs = feed(model, trim_padding(prep.inputs_of(va)))
    early = ResumableEarlyStopping(monitor="val_loss", patience=cfg.patience, restored=(state or {}).get("early_stopping"))
    verbose, progress = keras_progress(cfg.verbose)
    callbacks = [EpochSetter(batches), ReseedEachEpoch(cfg.seed), early, *progress]
    if write_run:
        callbacks.append(RunCheckpoint(run_dir, (state or {}).get("history"), (state or {}).get("best", math.inf), early))
    model.fit(
        batches, validation_data=(val_inputs, y[va]), validation_batch_size=256, epochs=cfg.epochs,
        initial_epoch=initial_epoch, callbacks=callbacks, verbose=verbose,
    )
    if write_run and (run_dir / runs.MODEL).exists():
        return keras.saving.load_model(run_dir / runs.MODEL, compile=False)
    return model
