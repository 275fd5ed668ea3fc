"""Score a trained run on every usable film of a dataset folder (for example one the project has never seen)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from movie_genres.data.dataset import load_dataset
from movie_genres.evaluation.metrics import full_metrics
from movie_genres.io import write_json


def evaluate(run_dir, data=None, output=None) -> dict:
    """Evaluate ``run_dir`` on all usable films of ``data``; write JSON to ``output`` if given.

    ``tuned`` keys at the top level use the run's stored thresholds (chosen on its validation split); ``at_0_5`` uses 0.5.
    Films the model cannot read (no usable poster for a poster model, ...) are skipped and counted in ``n_skipped``.

    Example:
        >>> m = evaluate("runs/main", "/data/heldout", "heldout.json")  # doctest: +SKIP
        >>> m["micro_f1"]  # doctest: +SKIP
    """
    from collections import Counter

    from movie_genres.predictor import Predictor

    pred = Predictor.load(run_dir)
    ds = load_dataset(data)
    if ds.genres != pred.genres:
        raise ValueError(f"dataset genres {ds.genres} differ from the run's {pred.genres}")
    inputs, usable, problems = pred.transform(ds.poster_paths, ds.overviews, progress=True)
    if not usable.any():
        raise ValueError(f"no film in {ds.root} is usable by model '{pred.model_name}' ({dict(problems)})")
    probs = pred.scores({k: v[usable] for k, v in inputs.items()})
    y = ds.labels[usable].astype(np.int8)
    m = full_metrics(pred.genres, y, probs, pred.thresholds_, pred.trained, pred.config.get("min_one_genre", True), cross_fit=False)
    skipped = Counter(ds.skipped)
    dropped = int((~usable).sum())
    if dropped:
        skipped.update({k: v for k, v in problems.items() if v} or {"unusable input": dropped})
    out = {
        **m["tuned"],
        "n_films": int(usable.sum()),
        "n_skipped": int(ds.n_skipped + dropped),
        "at_0_5": m["at_0_5"],
        "per_genre": m["per_genre"],
        "baselines": m["baselines"],
        "skipped": dict(skipped),
        "model": pred.model_name,
        "run": str(pred.run_dir),
        "data": str(ds.root),
    }
    if output:
        write_json(output, out)
    return out
