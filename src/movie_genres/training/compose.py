"""``late`` and ``ensemble``: composed of their members' runs (models/registry.py names them), no fit of their own."""
from __future__ import annotations

import filecmp
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np

from movie_genres import runs
from movie_genres.config import Config
from movie_genres.io import atomic_write
from movie_genres.models.inference import predict_proba_arrays
from movie_genres.models.registry import compose_model, members
from movie_genres.training.prepare import Prepared

log = logging.getLogger(__name__)
# The files that make two runs the same model: weights, preprocessing, genres, thresholds.
SAME_RUN = (runs.MODEL, runs.FEATURIZER, runs.VOCAB, runs.GENRES, runs.THRESHOLDS)


def member_models(cfg: Config, data_dir: Path, run_dir: Path, names, reuse: bool, train: Callable) -> tuple[dict, float]:
    """The named models exactly as ``train(name)`` with ``cfg``'s settings makes them, each kept as a run in
    ``run_dir/members/<name>`` (from the run cache when that run already exists, as in ``train --model all``).

    ``train`` is :func:`movie_genres.training.train.train`. Also returns the seconds to add to the composed run's
    training time so that it counts its members' own training whether it happened now or when the reused runs were
    trained."""
    import keras

    out, extra = {}, 0.0
    settings = {k: v for k, v in cfg.to_dict().items() if k not in ("model", "epochs")}
    for name in names:
        t0 = time.perf_counter()
        member = train(name, data_dir, run_dir / runs.MEMBERS / name, epochs=cfg.epochs, reuse=reuse, **settings)
        extra += runs.read_metrics(member)["train_seconds"] - (time.perf_counter() - t0)
        (member / runs.LAST).unlink(missing_ok=True)  # members are never resumed on their own (train drops checkpoint/)
        # an uncompiled copy: a compiled member would carry its training metrics into the composed model's file
        out[name] = keras.saving.load_model(member / runs.MODEL, compile=False)
    return out, extra


def late_weights(prep: Prepared, text_head, image_head) -> list[float]:
    """Per-genre text weight of late fusion, chosen by validation log-loss (thresholds are tuned after)."""
    from sklearn.metrics import log_loss

    va = prep.val_idx
    y = prep.ds.labels[va]
    vi = prep.inputs_of(va)
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


def compose(cfg: Config, prep: Prepared, run_dir: Path, data_dir: Path, reuse: bool, train: Callable):
    """Train (or find) the members, weigh text against poster per genre on validation, save the composed model.

    Late fusion is the per-genre weighted mean of the text and poster heads' probabilities; the ensemble is the mean
    of the text head, poster head, late fusion of the two, early fusion and GMU. Returns ``(model, member seconds)`` (see :func:`member_models`)."""
    fitted, extra = member_models(cfg, data_dir, run_dir, members(cfg.model), reuse, train)
    model = compose_model(cfg.model, fitted, late_weights(prep, fitted["text"], fitted["image"]))
    model.compile(loss="binary_crossentropy")
    atomic_write(run_dir / runs.MODEL, lambda tmp: model.save(tmp))
    atomic_write(run_dir / runs.LAST, lambda tmp: model.save(tmp))
    return model, extra


def same_run(a: Path, b: Path) -> bool:
    """Whether two finished run folders hold the same model: byte-identical weights, preprocessing, genres and
    thresholds (a member restored from the run cache is a copy of the run it was stored from)."""
    if not all((d / runs.MODEL).is_file() and (d / runs.METRICS).is_file() for d in (a, b)):
        return False
    for name in SAME_RUN:
        fa, fb = a / name, b / name
        if fa.exists() != fb.exists() or (fa.exists() and not filecmp.cmp(fa, fb, shallow=False)):
            return False
    return True


def link_members(run_dir: Path) -> list[str]:
    """Replace each ``members/<name>`` copy that is the same run as ``<run_dir>/../<name>`` (the run beside it in a
    folder of runs) with a relative symbolic link to it; returns the names linked.

    The composed model's ``model.keras`` holds every member's weights, so the run loads and predicts without its
    members: a run folder copied alone (where the links point nowhere) still works; ``cp -r`` of the whole folder of
    runs keeps the links. Where the file system has no symbolic links, the copy stays.
    """
    folder = Path(run_dir) / runs.MEMBERS
    linked = []
    if not folder.is_dir():
        return linked
    for member in sorted(folder.iterdir()):
        sibling = Path(run_dir).parent / member.name
        if member.is_symlink() or not member.is_dir() or not same_run(member, sibling):
            continue
        link, old = folder / f".{member.name}.link", folder / f".{member.name}.copy"
        try:
            link.unlink(missing_ok=True)
            link.symlink_to(os.path.relpath(sibling, folder), target_is_directory=True)
            os.replace(member, old)
            os.replace(link, member)
        except OSError as exc:  # no symbolic links here: keep the copy
            log.info("%s kept as a copy (%s)", member, exc)
            link.unlink(missing_ok=True)
            if old.exists() and not member.exists():
                os.replace(old, member)
            continue
        shutil.rmtree(old, ignore_errors=True)
        linked.append(member.name)
    if linked:
        log.info("%s: members %s are links to the runs beside it", run_dir, ", ".join(linked))
    return linked
