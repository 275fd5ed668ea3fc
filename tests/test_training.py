"""Training on tiny synthetic data: run folder contents, reload, predictor, evaluate, never overwriting runs."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, f1_score

from conftest import synthetic_rows, write_dataset
from movie_genres import GenreClassifier, Predictor, evaluate, train
from movie_genres.config import ConfigError, make_config
from movie_genres.predictor import RunError

RUN_FILES = {"config.json", "featurizer.json", "genres.json", "thresholds.json", "model.keras", "last.keras", "history.csv",
             "metrics.json", "split.csv", "val_predictions.csv", "samples.html"}


@pytest.mark.parametrize("model", ["cnn", "bilstm"])
def test_run_folder_is_complete(trained_runs, model):
    run = trained_runs[model]
    assert RUN_FILES <= {p.name for p in run.iterdir()}
    assert not (run / "checkpoint").exists()  # a finished run keeps no resume checkpoint
    assert {p.name for p in (run / "plots").iterdir()} >= {"learning_curves.png", "confusion_matrices.png", "cooccurrence.png", "per_genre_f1.png"}
    m = json.loads((run / "metrics.json").read_text())
    genres = json.loads((run / "genres.json").read_text())
    # metrics.json is what scikit-learn gives on the saved validation predictions
    preds = pd.read_csv(run / "val_predictions.csv")
    y = preds[[f"true_{g}" for g in genres["genres"]]].to_numpy()
    prob = preds[[f"prob_{g}" for g in genres["genres"]]].to_numpy()
    scored = np.array(genres["trained"]) & (y.sum(axis=0) > 0)
    assert m["evaluated_genres"] == [g for g, k in zip(genres["genres"], scored) if k]
    y, prob = y[:, scored], prob[:, scored]
    assert m["at_0_5"]["micro_f1"] == pytest.approx(f1_score(y, (prob >= 0.5).astype(int), average="micro", zero_division=0), abs=1e-4)
    assert m["at_0_5"]["map_macro"] == pytest.approx(average_precision_score(y, prob, average="macro"), abs=1e-4)
    # the constant baselines: always the most common label of these films, and always the two most common
    order = np.argsort(-y.sum(axis=0), kind="stable")
    common = [m["evaluated_genres"][j] for j in order[:2]]
    assert list(m["baselines"]) == [f"always {common[0]}", f"always {common[0]} + {common[1]}"]
    top = np.zeros_like(y)
    top[:, order[0]] = 1
    assert m["baselines"][f"always {common[0]}"]["micro_f1"] == pytest.approx(f1_score(y, top, average="micro", zero_division=0), abs=1e-4)
    assert len(genres["genres"]) == 25 and "Western" in genres["excluded"]  # never present in the synthetic data
    hist = pd.read_csv(run / "history.csv")
    assert {"loss", "val_loss", "precision", "val_precision", "auc"} <= set(hist.columns) and len(hist) == 2
    split = pd.read_csv(run / "split.csv")
    assert set(split["split"]) == {"train", "val"} and m["n_films"] == (split["split"] == "val").sum()
    if model == "bilstm":
        assert (run / "vocab.json").exists()


@pytest.mark.parametrize("model", ["cnn", "bilstm"])
def test_reloaded_run_reproduces_validation_scores(trained_runs, model):
    run, data = trained_runs[model], trained_runs["data"]
    preds = pd.read_csv(run / "val_predictions.csv")
    ds_csv = pd.read_csv(data / "IMDB_overview_genres.csv").set_index("Id")
    ids = preds["Id"].tolist()
    p = Predictor.load(run)
    posters = [data / "Images" / f"{i}.jpg" for i in ids]
    overviews = [ds_csv.loc[i, "Overview"] for i in ids]
    probs = p.answer(posters, overviews).raw  # val_predictions.csv holds the model's own probabilities
    stored = preds[[f"prob_{g}" for g in p.genres]].to_numpy()
    np.testing.assert_allclose(probs, stored, atol=2e-4)
    # the truth columns line up with the dataset by Id
    truth = preds[[f"true_{g}" for g in p.genres]].to_numpy()
    np.testing.assert_array_equal(truth, ds_csv.loc[ids, p.genres].to_numpy())
    decided = p.predict(posters, overviews)
    assert (decided.sum(axis=1) >= 1).all()
    one = p.predict_one(posters[0] if model == "cnn" else None, overviews[0] if model == "bilstm" else None)
    assert set(one) == {"probabilities", "genres", "inputs_used", "status", "model", "version"} and one["model"] == model
    assert one["status"] == "ok"
    assert one["inputs_used"] == (["poster"] if model == "cnn" else ["overview"])


def test_evaluate_on_another_dataset(trained_runs, tmp_path):
    rows = synthetic_rows(20, seed=7)
    data = write_dataset(tmp_path / "heldout", rows, posters={rows[0]["Id"]: None, rows[1]["Id"]: b"garbage"})
    out = evaluate(trained_runs["cnn"], data, tmp_path / "e.json")
    saved = json.loads((tmp_path / "e.json").read_text())
    for key in ("micro_f1", "macro_f1", "weighted_f1", "samples_f1", "micro_precision", "micro_recall", "map_macro", "n_films", "n_skipped"):
        assert key in saved and key in out
    assert set(saved["at_0_5"]) >= {"micro_f1", "micro_precision", "map_macro"}
    assert saved["n_films"] == 18 and saved["n_skipped"] == 2


def test_runs_are_never_overwritten(tmp_path, tiny_data, tiny_config, cache_dir):
    first = train("bilstm", tiny_data, tmp_path / "run", cache_dir=cache_dir, **{**tiny_config, "epochs": 1})
    second = train("bilstm", tiny_data, tmp_path / "run", cache_dir=cache_dir, **{**tiny_config, "epochs": 1})
    assert first == tmp_path / "run" and second == tmp_path / "run2"
    assert json.loads((first / "config.json").read_text())["model"] == "bilstm"


def test_model_defaults_apply_unless_overridden(trained_runs, tmp_path, tiny_data, tiny_config, cache_dir):
    def saved(run):
        return json.loads((run / "config.json").read_text())

    assert saved(trained_runs["cnn"])["pos_weight"] is True  # config.MODEL_DEFAULTS
    assert saved(trained_runs["bilstm"])["pos_weight"] is False
    plain = train("cnn", tiny_data, tmp_path / "plain", cache_dir=cache_dir, pos_weight=False, **{**tiny_config, "epochs": 1})
    assert saved(plain)["pos_weight"] is False


def test_config_errors_are_clear():
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        make_config(epoch=3)
    with pytest.raises(ConfigError, match="expected true or false"):
        make_config(augment="maybe")
    assert make_config(lstm_units="256,128").lstm_units == (256, 128)


def test_predictor_refuses_unfinished_runs(tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(RunError, match="not a finished run"):
        Predictor.load(tmp_path / "half")


def test_sklearn_style_estimator(tiny_data, tiny_config, cache_dir, tmp_path):
    clf = GenreClassifier("bilstm", cache_dir=cache_dir, **{**tiny_config, "epochs": 1}).fit(tiny_data, out=tmp_path / "est")  # a dataset folder
    probs = clf.predict_proba([{"poster": None, "overview": "funny laugh joke"}])
    assert probs.shape == (1, len(clf.classes_)) and not np.isnan(probs).any()
    with pytest.raises(ValueError, match="needs a usable overview; film 2 has none"):  # one policy: no silent NaN row
        clf.predict_proba([{"poster": None, "overview": "funny laugh joke"}, {"poster": None, "overview": ""}])
    assert clf.predict([{"poster": None, "overview": "love kiss"}]).shape == (1, len(clf.classes_))
    assert GenreClassifier.from_run(clf.run_dir_).predict_proba([{"overview": "funny"}]).shape == (1, len(clf.classes_))


def test_api_verbs_stay_functions_after_every_submodule_is_imported():
    import importlib
    import pkgutil

    import movie_genres as mg

    for info in pkgutil.walk_packages(mg.__path__, "movie_genres."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    for verb in ("train", "train_all", "evaluate", "predict", "report", "serve"):
        assert callable(getattr(mg, verb)), f"movie_genres.{verb} is shadowed by a submodule"


def test_bilstm_embedding_starts_from_distilled_word_vectors(cache_dir):
    import keras

    from movie_genres.config import make_config
    from movie_genres.features.inputs import OverviewTokens
    from movie_genres.features.word_vectors import distilled_embeddings
    from movie_genres.models.bilstm import build_bilstm
    from movie_genres.training.fit import init_embedding

    feat = OverviewTokens(50, 12).fit([], ["a lonely robot falls in love", "war breaks out in space", "a detective hunts a killer"])
    words = feat.vectorizer.words()
    assert words[:2] == ["[PAD]", "[UNK]"] and "robot" in words
    model = build_bilstm(vocab_size=len(words), sequence_length=12, embedding_dim=8, lstm_units=(4,))
    before = keras.ops.convert_to_numpy(model.get_layer("embedding").embeddings).copy()
    init_embedding(model, make_config(model="bilstm", embedding_init="random", embedding_dim=8), feat)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.get_layer("embedding").embeddings), before)
    init_embedding(model, make_config(model="bilstm", embedding_dim=8, cache_dir=cache_dir), feat)
    expected = distilled_embeddings(words, 8, cache_dir=cache_dir, scale=1.0, seed=42)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.get_layer("embedding").embeddings), expected, atol=1e-6)
    with pytest.raises(ValueError, match="embedding_init"):
        init_embedding(model, make_config(model="bilstm", embedding_init="glove"), feat)


def test_a_failed_train_leaves_no_run_folder(tmp_path, tiny_config, cache_dir):
    rows = synthetic_rows(20, seed=4)
    broken = write_dataset(tmp_path / "broken", rows, posters={r["Id"]: b"not a jpeg" for r in rows})
    with pytest.raises(ValueError, match="not enough usable films"):
        train("cnn", broken, tmp_path / "run", cache_dir=cache_dir, **{**tiny_config, "epochs": 1})
    assert not (tmp_path / "run").exists()  # no orphan config.json

    (tmp_path / "mine").mkdir()  # a folder that was there (empty) before stays, empty
    with pytest.raises(ValueError, match="not enough usable films"):
        train("cnn", broken, tmp_path / "mine", cache_dir=cache_dir, **{**tiny_config, "epochs": 1})
    assert (tmp_path / "mine").is_dir() and not any((tmp_path / "mine").iterdir())

    good = write_dataset(tmp_path / "good", synthetic_rows(40, seed=4))
    assert train("cnn", good, tmp_path / "run", cache_dir=cache_dir, image_size=16, **{**tiny_config, "epochs": 1}) == tmp_path / "run"


def test_a_failed_train_with_a_checkpoint_is_kept_to_resume(tmp_path, tiny_config, cache_dir, monkeypatch):
    import movie_genres.training.train as train_module

    data = write_dataset(tmp_path / "data", synthetic_rows(40, seed=8))

    def fails(*args, **kwargs):
        raise OSError("disk gone")

    monkeypatch.setattr(train_module, "finish_run", fails)
    with pytest.raises(OSError, match="disk gone"):
        train("bilstm", data, tmp_path / "run", reuse=False, cache_dir=cache_dir, embedding_init="random", **{**tiny_config, "epochs": 1})
    assert (tmp_path / "run" / "checkpoint" / "state.json").exists()
    monkeypatch.undo()
    run = train(resume=tmp_path / "run")
    assert run == tmp_path / "run" and (run / "metrics.json").exists() and not (run / "checkpoint").exists()


def test_poster_augmentation_works_on_pixels_0_to_255():
    from movie_genres.training.batches import TrainBatches, augment_posters

    pixels = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3)).astype(np.uint8)
    out = augment_posters(pixels, np.random.default_rng(1))
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 255 and out.max() > 1
    np.testing.assert_array_equal(out, augment_posters(pixels.astype(np.float32), np.random.default_rng(1)))
    grey = np.full((8, 16, 16, 3), 128, np.uint8)  # only brightness changes a flat image: by up to 10% of 255
    shift = np.abs(augment_posters(grey, np.random.default_rng(2)) - 128).max(axis=(1, 2, 3))
    assert (shift <= 25.5 + 1e-3).all() and shift.max() > 5

    labels = np.zeros((4, 25), np.float32)
    x, _ = TrainBatches({"poster": pixels}, labels, 2, 0, input_names=["poster"])[0]
    assert x.dtype == np.uint8  # posters stay uint8 in memory unless augmented
    x, _ = TrainBatches({"poster": pixels}, labels, 2, 0, augment=True, input_names=["poster"])[0]
    assert x.dtype == np.float32 and x.max() > 1
