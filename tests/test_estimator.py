"""GenreClassifier as a scikit-learn estimator: parameters, clone, fit(X, y) on films, the fitted attributes."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from movie_genres import GenreClassifier
from movie_genres.data.dataset import load_dataset
from movie_genres.estimator import CONFIG_KEYS, label_matrix, write_dataset

TINY = dict(epochs=1, batch_size=16, vocab_size=50, sequence_length=12, embedding_dim=8, lstm_units=(4,), hidden_units=8,
            min_positives=2, verbose=0, patience=5, workers=1, text_encoder="minilm")


def films(data: Path) -> tuple[pd.DataFrame, list[list[str]]]:
    """A dataset folder's films as X (poster paths + overviews) and y (label lists)."""
    ds = load_dataset(data)
    X = pd.DataFrame({"Id": ds.ids, "poster": [str(p) for p in ds.poster_paths], "overview": ds.overviews})
    y = [[g for g, v in zip(ds.genres, row) if v] for row in ds.labels]
    return X, y


def test_every_config_key_is_a_parameter_and_clone_keeps_them():
    clf = GenreClassifier("bilstm", out="runs/x", epochs=3, lstm_units=(8, 4), learning_rate=0.01)
    params = clf.get_params()
    assert set(params) == {"model", "out", "reuse", *CONFIG_KEYS}
    assert {k: v for k, v in params.items() if v is not None} == {"model": "bilstm", "out": "runs/x", "reuse": True, "epochs": 3,
                                                                  "lstm_units": (8, 4), "learning_rate": 0.01}
    twin = clone(clf)
    assert twin is not clf and twin.get_params() == params
    assert " ".join(repr(clf).split()) == "GenreClassifier(epochs=3, learning_rate=0.01, lstm_units=(8, 4), model='bilstm', out='runs/x')"


# scikit-learn's own checks that do not fit (check_estimator's fitting checks feed numeric matrices, not films)
SKLEARN_CHECKS = ("check_get_params_invariance", "check_set_params", "check_no_attributes_set_in_init",
                  "check_parameters_default_constructible", "check_estimator_repr", "check_estimator_cloneable",
                  "check_estimator_tags_renamed", "check_valid_tag_types")


@pytest.mark.parametrize("check", SKLEARN_CHECKS)
def test_scikit_learn_checks_that_apply(check):
    from sklearn.utils import estimator_checks

    getattr(estimator_checks, check)("GenreClassifier", GenreClassifier("bilstm", epochs=2, lstm_units=(4,)))


def test_set_params_changes_what_fit_uses():
    clf = GenreClassifier("cnn")
    assert clf.set_params(epochs=2, augment=False, model="text") is clf
    assert (clf.model, clf.epochs, clf.augment) == ("text", 2, False)
    assert clf.config_overrides() == {"epochs": 2, "augment": False}
    with pytest.raises(ValueError, match="Invalid parameter 'epoch'"):
        clf.set_params(epoch=2)
    with pytest.raises(TypeError, match="did you mean 'epochs'"):
        GenreClassifier("cnn", epoch=2)


def test_not_fitted_before_fit():
    clf = GenreClassifier("bilstm")
    X = [{"poster": None, "overview": "A ghost."}]
    for call in (lambda: clf.predict_proba(X), lambda: clf.predict(X), lambda: clf.score(X, [["Horror"]])):
        with pytest.raises(NotFittedError):
            call()


def test_bad_labels_and_films_are_a_clear_error(tmp_path):
    clf = GenreClassifier("bilstm", out=tmp_path / "run", **TINY)
    X = [{"poster": None, "overview": "A ghost."}, {"poster": None, "overview": "A kiss."}]
    with pytest.raises(ValueError, match="'Horror' and 'horror' are the same label"):
        clf.fit(X, [["Horror"], ["horror "]])
    with pytest.raises(ValueError, match="only 0 and 1"):
        clf.fit(X, np.full((2, 3), 2))
    with pytest.raises(ValueError, match="y has 1 rows for 2 films"):
        clf.fit(X, [["Horror"]])
    with pytest.raises(ValueError, match="needs y"):
        clf.fit(X)
    with pytest.raises(ValueError, match="'poster' nor an 'overview'"):
        clf.fit([{"text": "A ghost."}], [["Horror"]])
    assert not (tmp_path / "run").exists()  # nothing trained, no run folder


def test_label_lists_and_a_label_matrix_are_the_same_labels():
    lists = [["Horreur"], ["Comédie", "Science Fiction"], "Drame"]
    frame = pd.DataFrame({"Science Fiction": [0, 1, 0], "Horreur": [1, 0, 0], "Comédie": [0, 1, 0], "Drame": [0, 0, 1]})
    names = ["Comédie", "Drame", "Horreur", "Science Fiction"]  # label lists: every name used, sorted
    expected = np.array([[0, 0, 1, 0], [1, 0, 0, 1], [0, 1, 0, 0]], dtype=np.int8)
    matrix, got = label_matrix(lists, 3)
    assert got == names
    np.testing.assert_array_equal(matrix, expected)
    by_frame, frame_names = label_matrix(frame, 3, names)  # in a run's label order
    np.testing.assert_array_equal(by_frame, expected)
    assert frame_names == names
    bare, numbered = label_matrix(expected, 3)  # an array: its labels are its column numbers
    assert numbered == ["0", "1", "2", "3"]
    with pytest.raises(ValueError, match="'Western' are not the run's"):
        label_matrix([["Western"]], 1, names)
    with pytest.raises(ValueError, match="same label"):
        label_matrix([["Drame", "drame "]], 1)


def test_films_become_a_dataset_folder_the_loader_reads(tmp_path, tiny_data):
    X, y = films(tiny_data)
    posters = list(X["poster"])
    posters[1] = Path(posters[1]).read_bytes()  # bytes
    posters[2] = None  # no poster: the film keeps its overview
    labels, names = label_matrix(y, len(y))
    root = write_dataset(tmp_path / "d", posters, list(X["overview"]), labels, names, list(X["Id"]))
    ds = load_dataset(root)
    assert ds.ids == list(X["Id"]) and ds.overviews == list(X["overview"]) and ds.notes["poster missing"] == 1
    original = load_dataset(tiny_data)
    np.testing.assert_array_equal(ds.labels, original.labels[:, [original.genres.index(g) for g in ds.genres]])
    assert (root / "Images" / f"{X['Id'][0]}.jpg").is_symlink()  # poster files are linked, not copied
    assert (root / "Images" / f"{X['Id'][1]}.jpg").read_bytes() == posters[1]


def test_fit_on_films_returns_self_and_predicts_its_classes(tmp_path, tiny_data, cache_dir):
    X, y = films(tiny_data)
    clf = GenreClassifier("bilstm", out=tmp_path / "run", cache_dir=cache_dir, **TINY)
    assert clf.fit(X, y) is clf
    assert clf.run_dir_ == tmp_path / "run" and (clf.run_dir_ / "model.keras").exists()
    assert list(clf.classes_) == ["Action", "Comedy", "Drama", "Horror", "Romance"]  # the genres the films carry
    probs = clf.predict_proba(X.head(4))
    assert probs.shape == (4, 5) and np.isfinite(probs).all()
    decided = clf.predict(X.head(4))
    assert decided.shape == (4, 5) and (decided.sum(axis=1) >= 1).all()
    above = probs >= clf.thresholds_  # decisions at the tuned thresholds, else the top genre
    top = probs == probs.max(axis=1, keepdims=True)
    np.testing.assert_array_equal(decided, np.where(above.any(axis=1, keepdims=True), above, top))
    as_dicts = X.drop(columns="Id").head(4).to_dict("records")
    np.testing.assert_allclose(clf.predict_proba(as_dicts), probs)  # a list of dicts is the same films
    score = clf.score(X, y)
    assert 0.0 < score <= 1.0
    # the same run, reloaded: same parameters (less out) and the same scores
    again = GenreClassifier.from_run(clf.run_dir_)
    assert {k: v for k, v in again.get_params().items() if v is not None} == {
        "model": "bilstm", "reuse": True, "cache_dir": cache_dir, **TINY}
    np.testing.assert_allclose(again.predict_proba(X.head(4)), probs, atol=1e-6)
    with pytest.raises(NotFittedError):
        clone(clf).predict(X.head(1))  # a clone has the parameters, not the fit
    thawed = pickle.loads(pickle.dumps(clf))  # pickled without the model, loaded again from the run folder
    assert thawed.run_dir_ == clf.run_dir_ and list(thawed.classes_) == list(clf.classes_)
    np.testing.assert_allclose(thawed.predict_proba(X.head(4)), probs, atol=1e-6)
