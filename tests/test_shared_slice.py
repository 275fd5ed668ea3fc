"""A real end-to-end run on ~200 films of the shared dataset: train 1 epoch, evaluate, predict, report."""
from __future__ import annotations

import json

import pytest

from movie_genres import Predictor, evaluate, report, train

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("model", ["cnn", "bilstm"])
def test_one_epoch_on_the_shared_data(shared_data, tmp_path, cache_dir, model):
    run = train(model, shared_data, tmp_path / model, epochs=1, limit=200, verbose=0, cache_dir=cache_dir)
    m = json.loads((run / "metrics.json").read_text())
    assert m["n_films"] == 40 and m["n_train"] == 160 and m["split"] == "validation"
    assert m["excluded_genres"] and "Documentary" in m["excluded_genres"]  # never present in this dataset
    assert m["baselines"]["always Drama + Comedy"]["micro_f1"] > 0.3
    p = Predictor.load(run)
    film = shared_data / "Images" / "tt0085549.jpg"
    out = p.predict_one(film if model == "cnn" else None, "A Pittsburgh woman with two jobs wants to get into ballet school.")
    assert out["genres"] and abs(sum(out["probabilities"].values())) > 0
    held = evaluate(run, shared_data, tmp_path / "eval.json")
    assert held["n_films"] == 5060 and held["n_skipped"] == 0
    html = report([run], tmp_path / "report.html", data=shared_data).read_text()
    assert model in html and "tt0" in html  # sample predictions carry real film ids
