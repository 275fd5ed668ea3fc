"""Train one model into a run folder: data -> split -> features -> fit -> thresholds -> metrics -> plots.

The run folder alone is enough to reload, evaluate and serve the model (docs/ARCHITECTURE.md lists its files).
"""
from __future__ import annotations

import logging
import math
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np

from movie_genres import __version__
from movie_genres.config import MODEL_DEFAULTS, Config, make_config
from movie_genres.data.dataset import Dataset, load_dataset, resolve_data_dir
from movie_genres.data.split import load_manifest, save_manifest, stratified_split
from movie_genres.evaluation.metrics import full_metrics, tune_thresholds
from movie_genres.io import new_run_dir, read_json, write_json
from movie_genres.models.registry import FUSION, PRETRAINED, build_model, check_model_name, make_featurizer
from movie_genres.training import run_cache

log = logging.getLogger(__name__)


def _compile(model, cfg: Config, trained: np.ndarray, pos_weight: np.ndarray | None):
    import keras

    from movie_genres.models.losses import MultiLabelLoss

    loss = MultiLabelLoss(cfg.loss, pos_weight=None if pos_weight is None else pos_weight.tolist(), genre_mask=trained.astype(float).tolist())
    model.compile(
        optimizer=keras.optimizers.Adam(cfg.learning_rate),
        loss=loss,
        metrics=[keras.metrics.Precision(name="precision"), keras.metrics.Recall(name="recall"), keras.metrics.AUC(name="auc", multi_label=True, num_labels=len(trained), label_weights=trained.astype("float32").tolist())],
    )
    return model


def positive_weights(labels: np.ndarray, cap: float = 10.0) -> np.ndarray:
    """sqrt(negatives / positives) per genre, capped: rare genres count more without swamping the loss."""
    pos = labels.sum(axis=0)
    neg = len(labels) - pos
    return np.clip(np.sqrt(neg / np.maximum(pos, 1)), 1.0, cap).astype(np.float32)


def _subset(inputs: dict, idx: np.ndarray) -> dict:
    return {k: v[idx] for k, v in inputs.items()}


def feed(model, inputs: dict):
    """The inputs ``model`` reads, by name; a single-input model gets the bare array."""
    names = input_names(model)
    return inputs[names[0]] if len(names) == 1 else {k: inputs[k] for k in names}


def predict_proba_arrays(model, inputs: dict, batch_size: int = 256) -> np.ndarray:
    """Model scores in batches (no progress bar; plain numpy in and out)."""
    from movie_genres.training.batches import trim_padding

    n = len(next(iter(inputs.values())))
    out = []
    for start in range(0, n, batch_size):
        batch = trim_padding({k: v[start : start + batch_size] for k, v in inputs.items()})
        out.append(np.asarray(model.predict_on_batch(feed(model, batch))))
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), dtype=np.float32)


def input_names(model) -> list[str]:
    return [t.name for t in model.inputs]


class Prepared:
    """A dataset turned into model inputs and split, with the films each part cannot use counted."""

    def __init__(self, cfg: Config, ds: Dataset, featurizer, train_idx, val_idx, inputs, usable, problems):
        self.cfg, self.ds, self.featurizer = cfg, ds, featurizer
        self.inputs, self.usable, self.problems = inputs, usable, problems
        self.train_idx = train_idx[usable[train_idx]]
        self.val_idx = val_idx[usable[val_idx]]
        self.skipped = Counter(ds.skipped) + problems_of(ds, usable, problems)
        counts = ds.labels[self.train_idx].sum(axis=0)
        self.trained = counts >= cfg.min_positives
        self.excluded = [g for g, t in zip(ds.genres, self.trained) if not t]


def problems_of(ds: Dataset, usable: np.ndarray, problems: Counter) -> Counter:
    """Films dropped because this model cannot read them, by reason."""
    dropped = int((~usable).sum())
    if not dropped:
        return Counter()
    reasons = Counter({k: v for k, v in problems.items() if v})
    total = sum(reasons.values())
    if total == dropped:
        return reasons
    return Counter({"unusable input": dropped}) if not reasons else Counter({f"no usable input ({', '.join(sorted(reasons))})": dropped})


def load_films(cfg: Config, data_dir) -> Dataset:
    ds = load_dataset(data_dir)
    return ds.subset(np.arange(min(cfg.limit, len(ds)))) if cfg.limit else ds


def prepare(cfg: Config, data_dir, run_dir: Path, resume: bool = False, ds: Dataset | None = None) -> Prepared:
    ds = ds if ds is not None else load_films(cfg, data_dir)
    manifest = run_dir / "split.csv"
    if resume and manifest.exists():
        split = load_manifest(manifest)
        train_idx = np.array([i for i, f in enumerate(ds.ids) if split.get(f) == "train"])
        val_idx = np.array([i for i, f in enumerate(ds.ids) if split.get(f) == "val"])
    else:
        train_idx, val_idx = stratified_split(ds.labels, cfg.val_fraction, cfg.seed)
        save_manifest(manifest, ds.ids, train_idx, val_idx)
    featurizer = make_featurizer(cfg)
    featurizer.fit([ds.poster_paths[i] for i in train_idx], [ds.overviews[i] for i in train_idx])
    inputs, usable, problems = featurizer.transform(ds.poster_paths, ds.overviews, progress=cfg.verbose > 0)
    if "poster" in inputs:
        inputs["poster"] = inputs["poster"].astype(np.float32) / 255.0
    prep = Prepared(cfg, ds, featurizer, train_idx, val_idx, inputs, usable, problems)
    if len(prep.train_idx) == 0 or len(prep.val_idx) == 0:
        raise ValueError(f"not enough usable films to train {cfg.model}: {len(prep.train_idx)} train, {len(prep.val_idx)} validation ({dict(prep.skipped)})")
    log.info("%s: %d train / %d validation films; skipped %s", cfg.model, len(prep.train_idx), len(prep.val_idx), dict(prep.skipped))
    return prep


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
    layer.embeddings.assign(distilled_embeddings(words, layer.output_dim, cfg.text_encoder, cfg.cache_dir, cfg.embedding_scale, cfg.seed))
    log.info("bilstm: embedding starts from %s word vectors (%d words, %.1fs)", cfg.text_encoder, len(words), time.perf_counter() - t0)


def fit_keras(cfg: Config, prep: Prepared, run_dir: Path, model=None, state: dict | None = None, write_run: bool = True):
    """Fit a Keras model on prepared inputs with early stopping; returns the best model."""
    import keras

    from movie_genres.training.batches import EpochSetter, TrainBatches, oversample_index, trim_padding
    from movie_genres.training.callbacks import ReseedEachEpoch, ResumableEarlyStopping, RunCheckpoint

    y = prep.ds.labels
    tr, va = prep.train_idx, prep.val_idx
    pos_weight = positive_weights(y[tr]) if cfg.pos_weight else None
    if model is None:
        model = _compile(build_model(cfg, prep.featurizer, len(prep.ds.genres)), cfg, prep.trained, pos_weight)
        if cfg.model == "bilstm":
            init_embedding(model, cfg, prep.featurizer)
    index = oversample_index(y[tr], prep.trained, cfg.oversample_max) if cfg.oversample else None
    initial_epoch = state["epochs_done"] if state else 0
    batches = TrainBatches(
        _subset(prep.inputs, tr), y[tr], cfg.batch_size, cfg.seed, index, augment=cfg.augment,
        modality_dropout=cfg.modality_dropout if cfg.model in FUSION else 0.0, epoch=initial_epoch,
        input_names=input_names(model),
    )
    val_inputs = feed(model, trim_padding(_subset(prep.inputs, va)))
    early = ResumableEarlyStopping(monitor="val_loss", patience=cfg.patience, restored=(state or {}).get("early_stopping"))
    callbacks = [EpochSetter(batches), ReseedEachEpoch(cfg.seed), early]
    if write_run:
        callbacks.append(RunCheckpoint(run_dir, (state or {}).get("history"), (state or {}).get("best", math.inf), early))
    history = model.fit(
        batches, validation_data=(val_inputs, y[va]), validation_batch_size=256, epochs=cfg.epochs,
        initial_epoch=initial_epoch, callbacks=callbacks, verbose=cfg.verbose,
    )
    if write_run and (run_dir / "model.keras").exists():
        return keras.saving.load_model(run_dir / "model.keras", compile=False)
    return model


def member_models(cfg: Config, data_dir: Path, run_dir: Path, names, reuse: bool = True) -> tuple[dict, float]:
    """The named models exactly as ``train(name)`` with ``cfg``'s settings makes them, each kept as a run in
    ``run_dir/members/<name>`` (from the run cache when that run already exists, as in ``train --model all``).

    Also returns the seconds to add to the composed run's training time so that it counts its members' own training
    whether it happened now or when the reused runs were trained."""
    import keras

    out, extra = {}, 0.0
    settings = {k: v for k, v in cfg.to_dict().items() if k not in ("model", "epochs")}
    for name in names:
        t0 = time.perf_counter()
        member = train(name, data_dir, run_dir / "members" / name, epochs=cfg.epochs, reuse=reuse, **settings)
        extra += read_json(member / "metrics.json")["train_seconds"] - (time.perf_counter() - t0)
        for leftover in ("checkpoint", "last.keras"):  # members are never resumed on their own
            path = member / leftover
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        # an uncompiled copy: a compiled member would carry its training metrics into the composed model's file
        out[name] = keras.saving.load_model(member / "model.keras", compile=False)
    return out, extra


def _late_weights(prep: Prepared, text_head, image_head) -> list[float]:
    """Per-genre text weight of late fusion, chosen by validation log-loss (thresholds are tuned after)."""
    from sklearn.metrics import log_loss

    va = prep.val_idx
    y = prep.ds.labels[va]
    vi = _subset(prep.inputs, va)
    p_t = predict_proba_arrays(text_head, vi)
    p_v = predict_proba_arrays(image_head, vi)
    has_t, has_v = vi["has_overview"], vi["has_poster"]
    weights = np.zeros(y.shape[1])
    grid = np.linspace(0, 1, 11)
    for g in range(y.shape[1]):
        if not prep.trained[g] or y[:, g].sum() == 0:
            weights[g] = 0.5
            continue
        losses = []
        for w in grid:
            wt, wv = w * has_t[:, 0], (1 - w) * has_v[:, 0]
            p = (wt * p_t[:, g] + wv * p_v[:, g]) / np.maximum(wt + wv, 1e-6)
            losses.append(log_loss(y[:, g], np.clip(p, 1e-6, 1 - 1e-6), labels=[0, 1]))
        weights[g] = grid[int(np.argmin(losses))]
    return weights.tolist()


def _save_composed(model, run_dir: Path) -> None:
    from movie_genres.io import atomic_write

    model.compile(loss="binary_crossentropy")
    atomic_write(run_dir / "model.keras", lambda tmp: model.save(tmp))
    atomic_write(run_dir / "last.keras", lambda tmp: model.save(tmp))


def fit_late(cfg: Config, prep: Prepared, run_dir: Path, data_dir: Path, reuse: bool = True):
    """Late fusion: a text head and a poster head trained apart, then a per-genre text weight chosen on validation."""
    from movie_genres.models.heads import build_late_fusion

    heads, extra = member_models(cfg, data_dir, run_dir, ("text", "image"), reuse)
    model = build_late_fusion(heads["text"], heads["image"], _late_weights(prep, heads["text"], heads["image"]))
    _save_composed(model, run_dir)
    return model, extra


def fit_ensemble(cfg: Config, prep: Prepared, run_dir: Path, data_dir: Path, reuse: bool = True):
    """The mean of the text, poster, late, early and GMU models' probabilities, each exactly its own run."""
    from movie_genres.models.heads import build_ensemble

    heads, extra = member_models(cfg, data_dir, run_dir, ("text", "image", "early", "gmu"), reuse)
    weights = _late_weights(prep, heads["text"], heads["image"])
    model = build_ensemble(heads["text"], heads["image"], heads["early"], heads["gmu"], weights)
    _save_composed(model, run_dir)
    return model, extra


def by_modality(prep: Prepared, model, genres, thresholds) -> dict:
    """Quality on the validation films when they have both inputs, only the poster, or only the overview."""
    from movie_genres.evaluation.metrics import full_metrics

    va = prep.val_idx
    vi = _subset(prep.inputs, va)
    both = (vi["has_overview"][:, 0] > 0) & (vi["has_poster"][:, 0] > 0)
    out = {}
    for case, hide in (("poster + overview", None), ("poster only", "overview"), ("overview only", "poster")):
        x = {k: v[both].copy() for k, v in vi.items()}
        if hide == "overview":
            x["has_overview"][:] = 0
            x["text_features"][:] = 0
        elif hide == "poster":
            x["has_poster"][:] = 0
            x["image_features"][:] = 0
        probs = predict_proba_arrays(model, x)
        m = full_metrics(genres, prep.ds.labels[va][both], probs, thresholds, prep.trained, prep.cfg.min_one_genre, objective=prep.cfg.threshold_objective)
        out[case] = {**m["tuned"], "n_films": int(both.sum())}
    return out


def _set_threads(cfg: Config) -> None:
    """Small models train fastest on one thread: with two, every tiny step pays for thread synchronisation
    (measured 1.2 s vs 19.7 s per epoch of the text head on this 2-core machine while another process ran)."""
    import os

    import keras

    if keras.backend.backend() != "torch":
        return
    import torch

    n = cfg.threads or (1 if cfg.model in PRETRAINED else len(os.sched_getaffinity(0)))
    torch.set_num_threads(n)


def train(model: str = "cnn", data=None, out=None, epochs: int | None = None, resume=None, reuse: bool = True,
          reuse_members: bool | None = None, **overrides) -> Path:
    """Train one model and write its run folder; returns the folder.

    Args:
        model: cnn | bilstm | text | image | early | gmu | late | ensemble.
        data: dataset folder (default: the shared development copy).
        out: run folder; an existing non-empty folder is never overwritten (``out2``, ``out3``, ... are used).
        epochs: upper bound on epochs (early stopping may end sooner).
        resume: an interrupted run folder to continue; its saved config is used.
        reuse: copy the identical finished run from the run cache when there is one (same config, films, posters
            and code; see :mod:`movie_genres.training.run_cache`); False trains anyway.
        reuse_members: the same for the runs ``late`` and ``ensemble`` are composed of (default: ``reuse``);
            ``train_all`` sets it, as it has just trained them.
        **overrides: any :class:`~movie_genres.config.Config` key.

    Example:
        >>> run = train("cnn", "../shared/data/multimodal-imdb", "runs/cnn", epochs=10)  # doctest: +SKIP
    """
    import keras

    if resume:
        run_dir = Path(resume)
        saved = read_json(run_dir / "config.json")
        data = data or saved["data_dir"]
        cfg = make_config({k: v for k, v in saved.items() if k not in ("data_dir", "version")})
        if epochs is not None:
            cfg = make_config(cfg, epochs=epochs)
        from movie_genres.training.callbacks import load_state

        state = load_state(run_dir)
        if (run_dir / "metrics.json").exists():
            log.info("%s already finished; nothing to resume", run_dir)
            return run_dir
        data_dir = resolve_data_dir(data)
    else:
        name = check_model_name(model)
        if epochs is None and name in PRETRAINED:
            epochs = overrides.pop("head_epochs", None) or make_config().head_epochs
        cfg = make_config(model=name, **{**MODEL_DEFAULTS.get(name, {}), **overrides, **({"epochs": epochs} if epochs is not None else {})})
        data_dir = resolve_data_dir(data)  # fail before creating anything
        run_dir = new_run_dir(out or f"runs/{cfg.model}")
        state = None
    run_config = {**cfg.to_dict(), "data_dir": str(data_dir), "version": __version__}
    if not resume:
        write_json(run_dir / "config.json", run_config)
    started = time.perf_counter()
    ds = load_films(cfg, data_dir)
    key = run_cache.run_key(cfg, ds)
    if not resume:
        cached = run_cache.lookup(cfg, key) if reuse else None
        if cached is not None:
            record = run_cache.restore(cached, run_dir)
            write_json(run_dir / "config.json", run_config)
            metrics = read_json(run_dir / "metrics.json")
            write_json(run_dir / "metrics.json", {**metrics, "reused": {"run_cache_key": key, "trained": record.get("stored")}})
            log.info("%s: reused the identical finished run from the run cache (%s, trained %s) in %.1fs; --retrain trains again",
                     cfg.model, key, record.get("stored"), time.perf_counter() - started)
            return run_dir
    keras.utils.set_random_seed(cfg.seed)
    _set_threads(cfg)
    prep = prepare(cfg, data_dir, run_dir, resume=bool(resume), ds=ds)
    prep.featurizer.save(run_dir)
    genres = prep.ds.genres
    write_json(run_dir / "genres.json", {"genres": genres, "trained": prep.trained.tolist(), "excluded": prep.excluded})
    member_seconds = 0.0
    if cfg.model == "late":
        best, member_seconds = fit_late(cfg, prep, run_dir, data_dir, reuse if reuse_members is None else reuse_members)
    elif cfg.model == "ensemble":
        best, member_seconds = fit_ensemble(cfg, prep, run_dir, data_dir, reuse if reuse_members is None else reuse_members)
    else:
        resume_model = None
        if state:
            from movie_genres.models.registry import register_layers
            from movie_genres.training.callbacks import restore_optimizer

            register_layers()  # the checkpoint may name the package's own layers

            # Rebuild the compiled model from the config, then restore weights and optimizer state from the checkpoint.
            trained = np.array(read_json(run_dir / "genres.json")["trained"], dtype=bool)
            pos_weight = positive_weights(prep.ds.labels[prep.train_idx]) if cfg.pos_weight else None
            resume_model = _compile(keras.saving.load_model(run_dir / "checkpoint" / "ckpt.keras", compile=False), cfg, trained, pos_weight)
            restore_optimizer(resume_model, run_dir / "checkpoint" / "optimizer.npz")
        try:
            best = fit_keras(cfg, prep, run_dir, resume_model, state)
        except KeyboardInterrupt:
            raise SystemExit(f"interrupted; the last finished epoch is saved. Continue with: movie-genres train --resume {run_dir}")
    train_seconds = time.perf_counter() - started + member_seconds
    finish_run(cfg, prep, run_dir, best, train_seconds)
    run_cache.store(run_dir, cfg, key)
    return run_dir


def finish_run(cfg: Config, prep: Prepared, run_dir: Path, model, train_seconds: float) -> dict:
    """Score validation, tune thresholds, write metrics, predictions, plots and the samples page."""
    import pandas as pd

    from movie_genres.io import atomic_write

    genres = prep.ds.genres
    va = prep.val_idx
    vi = _subset(prep.inputs, va)
    t0 = time.perf_counter()
    probs = predict_proba_arrays(model, vi)
    infer_ms = (time.perf_counter() - t0) * 1000 / max(len(va), 1)
    probs[:, ~prep.trained] = 0.0
    y = prep.ds.labels[va].astype(np.int8)
    thresholds = tune_thresholds(y, probs, prep.trained, cfg.threshold_objective)
    write_json(run_dir / "thresholds.json", {"genres": genres, "thresholds": thresholds.round(4).tolist()})
    metrics = {
        "model": cfg.model,
        "split": "validation",
        **full_metrics(genres, y, probs, thresholds, prep.trained, cfg.min_one_genre, objective=cfg.threshold_objective),
        "n_skipped": int(sum(prep.skipped.values())),
        "skipped": dict(prep.skipped),
        "notes": dict(prep.ds.notes),
        "n_train": int(len(prep.train_idx)),
        "excluded_genres": prep.excluded,
        "train_seconds": round(train_seconds, 1),
        "inference_ms_per_film": round(infer_ms, 3),
        "thresholds_note": f"tuned = per-genre thresholds ({cfg.threshold_objective} objective) cross-fitted on 5 folds of the validation films",
    }
    if "has_overview" in vi and "text_features" in vi and "image_features" in vi:
        metrics["by_modality"] = by_modality(prep, model, genres, thresholds)
    write_json(run_dir / "metrics.json", metrics)
    frame = pd.DataFrame({"Id": [prep.ds.ids[i] for i in va]})
    for g, name in enumerate(genres):
        frame[f"true_{name}"] = y[:, g]
    for g, name in enumerate(genres):
        frame[f"prob_{name}"] = probs[:, g].round(5)
    atomic_write(run_dir / "val_predictions.csv", lambda tmp: frame.to_csv(tmp, index=False))
    try:
        from movie_genres.reporting import write_run_plots, write_samples_page

        write_run_plots(run_dir)
        write_samples_page(run_dir / "samples.html", prep.ds.root, [run_dir])
    except ImportError:  # report package not available: the run itself is complete
        log.warning("report module unavailable; plots skipped")
    log.info("%s: validation micro-F1 %.3f (tuned), precision@0.5 %.3f", cfg.model, metrics["tuned"]["micro_f1"], metrics["at_0_5"]["micro_precision"])
    return metrics
