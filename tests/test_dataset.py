"""Every bad-input case of the data loader: a clear error for the whole file, a counted skip for one row."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from conftest import shared_or_skip, synthetic_rows, write_dataset
from movie_genres.data.dataset import DataError, default_data_dir, load_dataset, resolve_data_dir
from movie_genres.data.split import stratified_split
from movie_genres.features.posters import decode_posters


def _jpeg(mode="RGB", size=(30, 60), fmt="JPEG") -> bytes:
    buf = io.BytesIO()
    colour = {"RGB": (10, 200, 30), "L": 128, "CMYK": (0, 100, 200, 0), "RGBA": (10, 20, 30, 128)}[mode]
    Image.new(mode, size, colour).save(buf, fmt)
    return buf.getvalue()


def test_clean_dataset_loads(tiny_data):
    ds = load_dataset(tiny_data)
    assert len(ds) == 60 and ds.n_skipped == 0
    assert ds.labels.shape == (60, 25) and set(np.unique(ds.labels)) <= {0.0, 1.0}
    assert all(p is not None and p.exists() for p in ds.poster_paths)


def test_missing_folder_and_csv_say_what_is_expected(tmp_path):
    with pytest.raises(DataError, match="does not exist.*IMDB_overview_genres.csv"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no IMDB_overview_genres.csv"):
        load_dataset(tmp_path / "empty")


def test_the_default_data_folder_is_relative_to_the_working_directory_only(tmp_path, monkeypatch, tiny_data):
    """``../shared/data/multimodal-imdb`` from the working directory, never a folder found higher up."""
    checkout = tmp_path / "work" / "repo"
    (tmp_path / "work" / "shared" / "data").mkdir(parents=True)
    (tmp_path / "work" / "shared" / "data" / "multimodal-imdb").symlink_to(tiny_data, target_is_directory=True)
    (checkout / "src" / "deeper").mkdir(parents=True)
    monkeypatch.chdir(checkout)
    assert resolve_data_dir(None) == default_data_dir() == (tmp_path / "work" / "shared" / "data" / "multimodal-imdb").resolve()
    assert len(load_dataset()) == 60
    monkeypatch.chdir(checkout / "src" / "deeper")  # the data is two folders up: not looked for there
    with pytest.raises(DataError, match=r"no --data folder given and the default \.\./shared/data/multimodal-imdb .*"
                                        r"has no IMDB_overview_genres\.csv; pass --data DIR"):
        load_dataset()


def _cli(*args, cwd):
    env = {**os.environ, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "torch")}
    return subprocess.run([sys.executable, "-m", "movie_genres", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_a_verb_says_which_data_it_read_or_that_there_is_none(trained_runs, tmp_path):
    run, data = trained_runs["bilstm"], trained_runs["data"]
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "shared" / "data" / "multimodal-imdb").symlink_to(data, target_is_directory=True)
    (tmp_path / "repo").mkdir()
    tiny = ["--epochs", "1", "vocab_size=50", "sequence_length=12", "embedding_dim=8", "lstm_units=4", "verbose=0",
            "embedding_init=random", f"cache_dir={tmp_path / 'cache'}"]
    proc = _cli("train", "--model", "bilstm", "--output", tmp_path / "r", *tiny, cwd=tmp_path / "repo")  # no --data: the default
    assert proc.returncode == 0, proc.stderr
    assert f"INFO data: {data.resolve()} (80 usable films)" in proc.stderr.splitlines()
    proc = _cli("evaluate", run, cwd=tmp_path / "repo")  # no --data: the run's own validation split, on its data
    assert proc.returncode == 0, proc.stderr
    assert f"INFO data: {data.resolve()} (80 usable films)" in proc.stderr.splitlines()
    assert json.loads(proc.stdout)["n_films"] == json.loads((run / "metrics.json").read_text())["n_films"]
    lone = tmp_path / "elsewhere" / "repo"  # no ../shared next to it
    lone.mkdir(parents=True)
    proc = _cli("train", "--model", "bilstm", "--output", tmp_path / "r2", *tiny, cwd=lone)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "no --data folder given and the default ../shared/data/multimodal-imdb" in proc.stderr
    assert str(tmp_path / "elsewhere" / "shared" / "data" / "multimodal-imdb") in proc.stderr and "pass --data DIR" in proc.stderr


@pytest.mark.parametrize("env, outcome", [({}, pytest.skip.Exception), ({"CI": "true"}, pytest.fail.Exception),
                                          ({"MOVIE_GENRES_REQUIRE_DATA": "1"}, pytest.fail.Exception)])
def test_missing_shared_data_skips_here_and_fails_in_ci(tmp_path, tiny_data, monkeypatch, env, outcome):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("MOVIE_GENRES_REQUIRE_DATA", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(outcome, match="shared dataset not found"):
        shared_or_skip(tmp_path / "nowhere")
    assert shared_or_skip(tiny_data) == tiny_data


def test_missing_columns_is_an_error(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    (root / "IMDB_overview_genres.csv").write_text("Id,Genre,Action,Plot\ntt1,['Action'],1,x\n", encoding="utf-8")
    with pytest.raises(DataError, match="missing column.*Overview"):
        load_dataset(root)
    (root / "IMDB_overview_genres.csv").write_text("Id,Genre,Overview\ntt1,['Action'],x\n", encoding="utf-8")
    with pytest.raises(DataError, match="no label columns between Genre and Overview"):
        load_dataset(root)


def test_bad_rows_are_counted_not_fatal(tmp_path):
    rows = synthetic_rows(12)
    rows[0]["columns"] = {"Drama": "2"}  # genre value other than 0/1
    rows[1]["Genre"] = "['Western']"  # Genre disagrees with the one-hot columns
    rows[2]["Id"] = rows[3]["Id"]  # duplicate Id (the first is kept)
    rows[4]["Overview"] = ""  # empty overview: kept (poster still usable) but noted
    root = write_dataset(tmp_path / "d", rows)
    ds = load_dataset(root)
    assert ds.skipped["genre value not 0/1"] == 1
    assert ds.skipped["Genre disagrees with one-hot columns"] == 1
    assert ds.skipped["duplicate Id"] == 1
    assert ds.notes["empty overview"] == 1
    assert len(ds) == 9
    assert any("Western" in p for p in ds.problems)
    strict = load_dataset(root, require=("overview",))
    assert strict.skipped["empty overview"] == 1 and len(strict) == 8


def test_missing_fields_are_named(tmp_path):
    rows = synthetic_rows(6)
    rows[0]["columns"] = {"Comedy": "", "Drama": " "}  # empty genre cells
    root = write_dataset(tmp_path / "d", rows)
    csv_path = root / "IMDB_overview_genres.csv"
    lines = csv_path.read_text(encoding="utf-8").splitlines(keepends=True)
    short = next(csv.reader([lines[2]]))[:4]  # a short row: Id, Genre, Action, Adventure
    lines[2] = ",".join(f'"{v}"' for v in short) + "\n"
    csv_path.write_text("".join(lines), encoding="utf-8")
    ds = load_dataset(root)
    assert ds.skipped == {"missing fields": 2} and len(ds) == 4
    assert "no value for Comedy, Drama (" in ds.problems[0] and "not 0 or 1" not in ds.problems[0]
    assert "no value for Animation, Biography," in ds.problems[1] and "Western, Overview (empty" in ds.problems[1]


def test_non_utf8_row_is_skipped(tmp_path):
    root = write_dataset(tmp_path / "d", synthetic_rows(6))
    csv_path = root / "IMDB_overview_genres.csv"
    raw = csv_path.read_bytes().replace(b"A story of", b"A caf\xe9 story of", 1)  # Latin-1 byte, invalid UTF-8
    csv_path.write_bytes(raw)
    ds = load_dataset(root)
    assert ds.skipped["non-UTF-8 text"] == 1 and len(ds) == 5


def test_missing_poster_is_noted_or_skipped(tmp_path):
    rows = synthetic_rows(6)
    root = write_dataset(tmp_path / "d", rows, posters={rows[0]["Id"]: None})
    assert load_dataset(root).notes["poster missing"] == 1
    assert load_dataset(root, require=("poster",)).skipped["poster missing"] == 1


def test_poster_content_problems_are_counted(tmp_path):
    rows = synthetic_rows(8)
    good = _jpeg()
    posters = {
        rows[0]["Id"]: b"this is not an image at all",
        rows[1]["Id"]: good[: len(good) // 2],  # truncated JPEG (cut in its headers)
        rows[2]["Id"]: _jpeg("L"),  # greyscale
        rows[3]["Id"]: _jpeg("CMYK"),  # CMYK JPEG
        rows[4]["Id"]: _jpeg("RGBA", fmt="PNG"),  # a PNG behind a .jpg name
        rows[5]["Id"]: b"",  # empty file
    }
    root = write_dataset(tmp_path / "d", rows, posters=posters)
    ds = load_dataset(root)
    images, ok, problems, notes = decode_posters(ds.poster_paths, 16, cache_dir=None, workers=1, progress=False)
    assert ok.tolist() == [False, False, True, True, True, False, True, True]
    assert Counter(filter(None, problems)) == {"poster not an image": 1, "poster truncated": 1, "poster empty": 1}
    assert notes["poster greyscale converted to RGB"] == 1
    assert notes["poster CMYK converted to RGB"] == 1
    assert notes["poster is PNG, not JPEG"] == 1
    assert images.shape == (8, 16, 16, 3) and images[2].std() == 0 and images[2].mean() > 0


def test_jpeg_truncated_in_its_pixel_data_is_counted(tmp_path):
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (300, 150, 3), dtype=np.uint8)).save(buf, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) * 2 // 3])
    _, ok, problems, _ = decode_posters([path], 64, None, workers=1, progress=False)
    assert not ok[0] and problems == ["poster truncated"]


def test_poster_cache_is_reused_and_rebuilt_when_corrupt(tmp_path, tiny_data):
    ds = load_dataset(tiny_data)
    first = decode_posters(ds.poster_paths, 16, tmp_path / "c", workers=1, progress=False)[0]
    cache_file = next((tmp_path / "c").rglob("*.npz"))
    again = decode_posters(ds.poster_paths, 16, tmp_path / "c", workers=1, progress=False)[0]
    np.testing.assert_array_equal(first, again)
    cache_file.write_bytes(cache_file.read_bytes()[:100])  # corrupt it
    rebuilt = decode_posters(ds.poster_paths, 16, tmp_path / "c", workers=1, progress=False)[0]
    np.testing.assert_array_equal(first, rebuilt)


def test_parallel_decode_matches_serial(tiny_data):
    ds = load_dataset(tiny_data)
    paths = ds.poster_paths * 2  # > 64 jobs so the process pool is used
    serial = decode_posters(paths, 16, None, workers=1, progress=False)[0]
    parallel = decode_posters(paths, 16, None, workers=2, progress=False)[0]
    np.testing.assert_array_equal(serial, parallel)


def test_split_is_deterministic_stratified_and_disjoint(tiny_data):
    ds = load_dataset(tiny_data)
    a = stratified_split(ds.labels, 0.25, seed=3)
    b = stratified_split(ds.labels, 0.25, seed=3)
    np.testing.assert_array_equal(a[0], b[0])
    assert not set(a[0]) & set(a[1]) and len(a[0]) + len(a[1]) == len(ds)
    share = ds.labels[a[1]].mean(0) - ds.labels[a[0]].mean(0)
    assert np.abs(share).max() < 0.15
