"""One answer per film (Predictor.answer), the run-folder reader, and evaluate that never scores training films."""
from __future__ import annotations

import base64
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import synthetic_rows, write_dataset
from movie_genres import evaluate
from movie_genres.catalogue.batch import BatchPredictor
from movie_genres.features.posters import decode_posters
from movie_genres.predictor import Predictor
from movie_genres.runs import Run


def test_the_run_reader_gives_what_training_wrote(trained_runs):
    run = Run(trained_runs["cnn"])
    split = run.split()
    assert run.model_name == "cnn" and len(run.genres) == len(run.trained) == len(run.thresholds) == 25
    assert run.training_ids() | run.validation_ids() == set(split) and not run.training_ids() & run.validation_ids()
    ids, y_true, probs = run.validation_predictions()
    assert set(ids) == run.validation_ids() and y_true.shape == probs.shape == (len(ids), 25)
    decided = run.decide(probs)
    assert decided.sum(axis=1).min() >= 1  # min_one_genre: every film gets its top genre
    assert not decided[:, ~run.trained].any()  # genres too rare to learn are never decided
    assert {p.name for p in run.answer_files()} >= {"model.keras", "genres.json", "thresholds.json", "config.json"}


def test_every_path_reads_the_same_answer(trained_runs):
    """One-film predict, predict_many, predict_proba / predict and the catalogue's batch path give the same answer."""
    import pyarrow as pa

    run, data = trained_runs["cnn"], trained_runs["data"]
    posters = sorted((data / "Images").glob("*.jpg"))[:6]
    p = Predictor.load(run)
    answers = p.answer([str(x) for x in posters], [None] * len(posters))
    assert answers.status == ["ok"] * 6 and answers.inputs_used == [["poster"]] * 6
    many = p.predict_many([(str(x), None) for x in posters])
    assert many == [answers.film(i) for i in range(6)] == [p.predict_one(str(x)) for x in posters]
    np.testing.assert_allclose(p.predict_proba([str(x) for x in posters], [None] * 6), answers.probs, atol=1e-6)
    assert (p.predict([str(x) for x in posters], [None] * 6) == answers.decided).all()
    rows = pa.table({"Id": [x.stem for x in posters], "poster": [str(x) for x in posters], "overview": [None] * 6,
                     "note": [None] * 6, "_row": list(range(6))})
    out = BatchPredictor(p, batch_size=4).predict(rows).to_pydict()
    assert out["status"] == answers.status and out["genres"] == [answers.decided_genres(i) for i in range(6)]
    np.testing.assert_allclose(np.array([out[f"prob_{g}"] for g in p.genres]).T, answers.probs, atol=1e-5)


def test_evaluate_with_no_source_scores_the_runs_own_validation_split(trained_runs, capsys):
    run = trained_runs["bilstm"]
    m = evaluate(run)
    metrics = json.loads((run / "metrics.json").read_text())
    assert m["source"] == "validation split" and m["n_films"] == metrics["n_films"] == len(Run(run).validation_ids())
    assert m["excluded_training_films"] == 0
    # the same films and the same cross-fitted thresholds as training reported
    assert m["micro_f1"] == pytest.approx(metrics["tuned"]["micro_f1"], abs=1e-6)
    assert m["macro_f1"] == pytest.approx(metrics["tuned"]["macro_f1"], abs=1e-6)
    proc = subprocess.run([sys.executable, "-m", "movie_genres", "evaluate", str(run)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["source"] == "validation split"


def test_evaluate_leaves_out_the_films_a_run_trained_on_and_says_so(trained_runs, tmp_path, capsys):
    run, data = trained_runs["bilstm"], trained_runs["data"]
    n_train = len(Run(run).training_ids())
    m = evaluate(run, data)
    err = capsys.readouterr().err
    assert m["excluded_training_films"] == n_train and m["n_films"] == len(Run(run).validation_ids())
    assert m["source"] == "data" and not m["includes_training_films"]
    assert f"{n_train} of 80 films" in err and "not scored" in err
    kept = evaluate(run, data, include_training_films=True)
    assert kept["includes_training_films"] and kept["excluded_training_films"] == 0 and kept["n_films"] == 80
    assert "optimistic" in capsys.readouterr().err
    # a dataset of only training films leaves nothing to score: a clear error, not an empty score
    only_train = write_dataset(tmp_path / "train-only", [r for r in synthetic_rows(80, seed=1) if r["Id"] in Run(run).training_ids()])
    with pytest.raises(ValueError, match="left to score"):
        evaluate(run, only_train)
    # other films are scored in full
    other = write_dataset(tmp_path / "other", synthetic_rows(30, seed=3))
    assert evaluate(run, other)["n_films"] == 30


def test_evaluate_without_the_training_data_asks_for_a_source(trained_runs, tmp_path):
    import shutil

    from movie_genres.data.dataset import DataError

    moved = tmp_path / "run"
    shutil.copytree(trained_runs["bilstm"], moved)
    config = json.loads((moved / "config.json").read_text())
    config["data_dir"] = str(tmp_path / "gone")
    (moved / "config.json").write_text(json.dumps(config))
    with pytest.raises(DataError, match="give --data"):
        evaluate(moved)


def test_poster_conversion_notes_survive_the_poster_cache(tmp_path):
    grey = tmp_path / "grey.jpg"
    Image.fromarray(np.full((60, 30), 128, np.uint8), "L").save(grey, "JPEG")
    first = decode_posters([grey], 16, tmp_path / "cache", workers=1, progress=False)
    again = decode_posters([grey], 16, tmp_path / "cache", workers=1, progress=False)  # from the cache
    assert first[3] == again[3] == {"poster greyscale converted to RGB": 1}
    assert np.array_equal(first[0], again[0])


def test_report_thumbnails_are_turned_upright_as_the_model_sees_them(tmp_path):
    from movie_genres.reporting.html import poster_thumbnail

    sideways = Image.new("RGB", (300, 150), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: viewers (and open_poster) show it 150 wide, 300 high
    path = tmp_path / "p.jpg"
    sideways.save(path, "JPEG", exif=exif.tobytes())
    uri = poster_thumbnail(path)
    thumb = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert thumb.height > thumb.width


def test_calibration_lowers_the_ece_and_never_changes_a_decision_or_a_labels_order():
    from sklearn.metrics import average_precision_score

    from movie_genres.evaluation.calibration import Calibrator, ece, fit_calibration
    from movie_genres.evaluation.metrics import decide

    rng = np.random.default_rng(0)
    y = (rng.random((800, 3)) < 0.35).astype(int)
    raw = np.clip(0.3 + (y - 0.35) * 0.35 + rng.normal(0, 0.12, y.shape), 0.01, 0.99)  # under-confident, as measured
    fit = fit_calibration(["A", "B", "C"], y, raw, np.array([True, True, False]))
    assert fit["ece_after"] < fit["ece_before"] and fit["labels"]["C"] is None  # a label not learned is left alone
    cal = Calibrator(["A", "B", "C"], fit)
    probs = cal(raw)
    assert ece(y[:, :2], probs[:, :2]) < ece(y[:, :2], raw[:, :2])
    for j in range(2):
        assert (np.argsort(probs[:, j], kind="stable") == np.argsort(raw[:, j], kind="stable")).all()
        assert average_precision_score(y[:, j], probs[:, j]) == pytest.approx(average_precision_score(y[:, j], raw[:, j]))
    thr = np.array([0.3, 0.4, 1.0])
    assert (decide(cal.invert(probs), thr, True, np.array([True, True, False])) == decide(raw, thr, True, np.array([True, True, False]))).all()
    mapped = cal.thresholds(thr)
    assert mapped[2] == 1.0 and ((probs[:, :2] >= mapped[:2]) == (raw[:, :2] >= thr[:2])).mean() > 0.999


def test_a_run_records_its_calibration_and_reports_calibrated_probabilities(trained_runs):
    run = trained_runs["bilstm"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["calibration"]["method"] == "platt"
    assert metrics["calibration"]["ece_after"] <= metrics["calibration"]["ece_before"]
    p = Predictor.load(run)
    answers = p.answer([None] * 3, ["funny laugh joke", "ghost blood scream", "love kiss"])
    np.testing.assert_allclose(p.calibrator(answers.raw), answers.probs, atol=1e-6)
    assert (p.decide(answers.probs) == answers.decided).all() and (p.run.decide(answers.raw) == answers.decided).all()
