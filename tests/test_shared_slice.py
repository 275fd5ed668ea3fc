"""Real end-to-end runs on a slice of the shared dataset: train, evaluate on films never seen, predict, report."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from movie_genres import Predictor, evaluate, report, train

pytestmark = pytest.mark.slow


def _slice(shared: Path, dest: Path, start: int, stop: int) -> Path:
    """A dataset folder holding rows [start, stop) of the shared CSV, posters linked (the shared folder stays read-only)."""
    lines = (shared / "IMDB_overview_genres.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    import csv
    import io

    rows = list(csv.reader(io.StringIO("".join(lines))))
    header, body = rows[0], rows[1 + start : 1 + stop]
    (dest / "Images").mkdir(parents=True)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header, *body])
    (dest / "IMDB_overview_genres.csv").write_text(buf.getvalue(), encoding="utf-8")
    for row in body:
        src = shared / "Images" / f"{row[0]}.jpg"
        if src.exists():
            os.symlink(src, dest / "Images" / f"{row[0]}.jpg")
    return dest


@pytest.fixture(scope="module")
def slices(shared_data, tmp_path_factory):
    base = tmp_path_factory.mktemp("slices")
    return _slice(shared_data, base / "train", 0, 200), _slice(shared_data, base / "heldout", 4000, 4100)


@pytest.mark.parametrize("model", ["cnn", "bilstm", "gmu", "ensemble"])
def test_end_to_end_on_the_shared_data(slices, tmp_path, cache_dir, model):
    train_dir, heldout = slices
    run = train(model, train_dir, tmp_path / model, epochs=1, verbose=0, cache_dir=cache_dir)
    m = json.loads((run / "metrics.json").read_text())
    assert m["n_films"] == 40 and m["n_train"] == 160 and m["split"] == "validation"
    assert "Documentary" in m["excluded_genres"]  # never present in this dataset
    assert m["baselines"]["always Drama + Comedy"]["micro_f1"] > 0.3
    if model in ("gmu", "ensemble"):
        assert set(m["by_modality"]) == {"poster + overview", "poster only", "overview only"}
    held = evaluate(run, heldout, tmp_path / "eval.json")
    assert held["n_films"] == 100 and held["n_skipped"] == 0 and 0 < held["micro_f1"] <= 1
    p = Predictor.load(run)
    film = train_dir / "Images" / "tt0085549.jpg"
    out = p.predict_one(film if model != "bilstm" else None, "A Pittsburgh woman with two jobs wants to get into ballet school.")
    assert out["genres"] and set(out["inputs_used"]) <= {"poster", "overview"}
    html = report([run], tmp_path / "report.html", data=train_dir).read_text()
    assert model in html and "tt0" in html  # sample predictions carry real film ids
