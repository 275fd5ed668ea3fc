"""Bad input to predict and evaluate, end to end: undecodable overview text, long overviews from a file or stdin,
broken or oversized posters, unwritable outputs. Each is a clear error (exit 2) or an answer that says what it left out."""
from __future__ import annotations

import ast
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import synthetic_rows, write_dataset
from movie_genres import Predictor, evaluate, predict, train
from movie_genres.cli import main
from movie_genres.features.posters import PosterError
from movie_genres.io import OutputError

TINY = ["vocab_size=50", "sequence_length=12", "embedding_dim=8", "lstm_units=4", "batch_size=16", "min_positives=2", "verbose=0", "workers=1",
        "text_encoder=minilm"]


def _cli(*args, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """The real command line, arguments passed as given (bytes stay bytes)."""
    env = {**os.environ, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "torch")}
    argv = [sys.executable, "-m", "movie_genres", *(a if isinstance(a, bytes) else str(a) for a in args)]
    return subprocess.run(argv, input=stdin, capture_output=True, env=env, timeout=600)


def _main(capsys, *args) -> tuple[int, str, str]:
    """The command line in this process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _jpeg(mode: str = "RGB", fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (30, 60), {"RGB": (200, 30, 30), "L": 90, "CMYK": (0, 100, 200, 0)}[mode]).save(buf, fmt)
    return buf.getvalue()


def _bomb() -> bytes:
    """A tiny JPEG whose header says 20000x20000 pixels (over Pillow's decompression-bomb limit)."""
    raw = bytearray(_jpeg())
    sof = raw.index(b"\xff\xc0")
    raw[sof + 5 : sof + 9] = (20000).to_bytes(2, "big") * 2
    return bytes(raw)


def _truncated() -> bytes:
    good = _jpeg()
    return good[: len(good) // 2]


@pytest.fixture(scope="module")
def fusion_runs(trained_runs, tmp_path_factory, tiny_config, cache_dir) -> dict[str, Path]:
    """A fusion run (gmu: poster + overview) and a pretrained text-only run on the trained_runs data."""
    base = tmp_path_factory.mktemp("fusion")
    return {m: train(m, trained_runs["data"], base / m, cache_dir=cache_dir, **tiny_config) for m in ("gmu", "text")}


# -- overview text


def test_undecodable_overview_bytes_are_one_clear_error(trained_runs):
    proc = _cli("predict", trained_runs["bilstm"], "--overview", b"A caf\xe9 story with a \xff byte")
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "Traceback" not in err
    assert "--overview is not UTF-8" in err and "0xe9 at offset 5" in err


def test_lone_surrogates_reach_no_tokenizer(trained_runs, fusion_runs):
    for run in (trained_runs["bilstm"], fusion_runs["text"]):  # tokenizers WordLevel; MiniLM's tokenizer
        p = Predictor.load(run)
        bad = p.predict_one(None, "funny \udcff joke \ud83d\ude00")
        assert "U+FFFD" in bad.pop("warnings")[0]  # the answer says the text was repaired, and is otherwise the same
        assert bad == p.predict_one(None, "funny \ufffd joke \U0001F600")
        assert np.isfinite(p.predict_proba([None], ["laugh \udce9"])).all()
    out = predict(trained_runs["bilstm"], overview="funny \udcff joke")
    assert out["genres"] and "U+FFFD" in out["warnings"][0]


def test_overview_from_a_file_or_stdin_of_one_megabyte(trained_runs, tmp_path):
    run = trained_runs["bilstm"]
    text = ("A funny silly joke, then a ghost in a haunted house. " * 20_000)[: 1 << 20]
    path = tmp_path / "overview.txt"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())  # with a byte-order mark, as some editors save it
    from_file = _cli("-q", "predict", run, "--overview-file", path)
    from_stdin = _cli("-q", "predict", run, "--overview-file", "-", stdin=text.encode())
    assert from_file.returncode == 0, from_file.stderr.decode()
    assert from_stdin.returncode == 0, from_stdin.stderr.decode()
    expected = Predictor.load(run).predict_one(None, text)
    assert json.loads(from_file.stdout) == json.loads(from_stdin.stdout) == expected
    assert expected["inputs_used"] == ["overview"]


def test_overview_file_errors_are_clear(trained_runs, tmp_path, capsys):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Line one.\nUn café noir.".encode("latin-1"))
    code, _, err = _main(capsys, "predict", trained_runs["bilstm"], "--overview-file", latin1)
    assert code == 2 and "not UTF-8" in err and "0xe9 at offset 16 (line 2)" in err
    code, _, err = _main(capsys, "predict", trained_runs["bilstm"], "--overview-file", tmp_path / "nope.txt")
    assert code == 2 and "cannot read --overview-file" in err
    with pytest.raises(SystemExit):  # one source of overview text at a time
        main(["predict", str(trained_runs["bilstm"]), "--overview", "x", "--overview-file", str(latin1)])


# -- broken posters in predict


def test_a_named_poster_that_is_missing_or_will_not_decode_is_an_error_on_every_surface(trained_runs, fusion_runs, tmp_path, capsys):
    """One policy for the CLI, the Python API, the predictor / GenreClassifier (HTTP: tests/test_serve.py, 422)."""
    from movie_genres import GenreClassifier

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(_truncated())
    missing = tmp_path / "nope.jpg"
    overview = "A funny silly joke"
    for run in (fusion_runs["gmu"], fusion_runs["text"], trained_runs["cnn"]):
        for poster, reason in ((broken, "poster truncated"), (missing, "poster missing")):
            code, out, err = _main(capsys, "predict", run, "--poster", poster, "--overview", overview)
            assert code == 2 and reason in err and str(poster) in err and "Traceback" not in err and not out, (run, err)
            with pytest.raises(PosterError, match=reason):
                predict(run, poster=poster, overview=overview)
            with pytest.raises(PosterError, match=reason):
                Predictor.load(run).predict_many([(poster, overview)])
            with pytest.raises(PosterError, match=reason):
                GenreClassifier.from_run(run).predict_proba([{"poster": str(poster), "overview": overview}])
    # no poster at all is not an error for a model that also reads overviews: it answers from the overview
    assert predict(fusion_runs["gmu"], overview=overview)["inputs_used"] == ["overview"]


def test_catalogue_style_answers_count_a_broken_poster_and_answer_from_the_overview(fusion_runs, tmp_path):
    """``Predictor.answer`` (catalogues, evaluate) never raises for a film: it says what it used and why."""
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    p = Predictor.load(fusion_runs["gmu"])
    answers = p.answer([None, broken, broken], ["A funny silly joke", "A funny silly joke", ""])
    assert answers.status == ["partial: poster missing", "partial: poster not an image",
                              "skipped: poster not an image; empty overview"]
    assert answers.inputs_used == [["overview"], ["overview"], []] and answers.usable.tolist() == [True, True, False]
    assert "poster not an image" in answers.warnings[1][0] and not answers.warnings[0]
    assert np.array_equal(answers.probs[0], answers.probs[1]) and np.isnan(answers.probs[2]).all()
    assert answers.film(1)["genres"] == answers.film(0)["genres"]
    with pytest.raises(ValueError, match="not answered"):
        answers.film(2)


# -- posters over Pillow's pixel limit (a counted skip in train and evaluate, a clear answer in predict)


def test_oversized_poster_in_train_is_a_counted_skip(tmp_path, cache_dir, capsys):
    rows = synthetic_rows(40, seed=4)
    data = write_dataset(tmp_path / "data", rows, posters={rows[0]["Id"]: _bomb()})
    code, _, err = _main(capsys, "train", "--model", "cnn", "--data", data, "--out", tmp_path / "cnn", "--epochs", "1",
                         f"cache_dir={cache_dir}", *TINY)
    assert code == 0, err
    metrics = json.loads((tmp_path / "cnn" / "metrics.json").read_text())
    assert metrics["n_skipped"] == 1 and [k for k in metrics["skipped"] if "too large" in k]


def test_oversized_poster_in_evaluate_is_a_counted_skip(trained_runs, fusion_runs, tmp_path, capsys):
    rows = synthetic_rows(20, seed=5)
    data = write_dataset(tmp_path / "data", rows, posters={rows[0]["Id"]: _bomb()})
    code, out, err = _main(capsys, "evaluate", trained_runs["cnn"], "--data", data)
    assert code == 0, err
    m = json.loads(out)
    assert m["n_films"] == 19 and m["n_skipped"] == 1 and [k for k in m["skipped"] if "too large" in k]
    code, out, err = _main(capsys, "evaluate", fusion_runs["gmu"], "--data", data)
    assert code == 0, err
    m = json.loads(out)
    assert m["n_films"] == 20 and m["n_partial"] == 1 and [k for k in m["partial"] if "too large" in k]


def test_oversized_poster_in_predict(trained_runs, fusion_runs, tmp_path, capsys):
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(_bomb())
    code, _, err = _main(capsys, "predict", trained_runs["cnn"], "--poster", bomb)
    assert code == 2 and "too large" in err
    code, out, err = _main(capsys, "predict", fusion_runs["gmu"], "--poster", bomb, "--overview", "A funny joke")
    assert code == 2 and not out and "too large" in err


# -- evaluate


def test_evaluate_counts_poster_problems_and_conversions(fusion_runs, tmp_path, caplog):
    rows = synthetic_rows(24, seed=6)
    ids = [r["Id"] for r in rows]
    rows[6]["Overview"] = ""  # with a broken poster too: nothing this model can read
    posters = {ids[0]: _truncated(), ids[1]: b"not an image", ids[2]: None, ids[3]: _jpeg("L"), ids[4]: _jpeg("CMYK"),
               ids[5]: _jpeg("RGB", "PNG"), ids[6]: b"not an image either"}
    data = write_dataset(tmp_path / "data", rows, posters=posters)
    caplog.set_level("INFO", logger="movie_genres")
    m = evaluate(fusion_runs["gmu"], data, tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text()) == m
    assert (m["n_films"], m["n_skipped"], m["n_partial"]) == (23, 1, 3)
    assert m["skipped"] == {"no usable input (poster not an image, empty overview)": 1}
    assert m["partial"] == {"poster truncated": 1, "poster not an image": 1, "poster missing": 1}
    assert m["notes"] == {"poster missing": 1, "empty overview": 1, "poster greyscale converted to RGB": 1,
                          "poster CMYK converted to RGB": 1, "poster is PNG, not JPEG": 1}
    assert "23 films scored; skipped: 1 no usable input" in caplog.text and "1 poster truncated" in caplog.text


def test_evaluate_checks_its_output_before_any_work(trained_runs, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")

    def no_loading(*args, **kwargs):
        raise AssertionError("the run was loaded before the output was checked")

    monkeypatch.setattr(Predictor, "load", no_loading)
    for target in (blocker / "m.json", tmp_path):
        with pytest.raises(OutputError, match="cannot write"):
            evaluate(trained_runs["cnn"], trained_runs["data"], target)
    code, _, err = _main(capsys, "evaluate", trained_runs["cnn"], "--data", trained_runs["data"], "--output", blocker / "sub" / "m.json")
    assert code == 2 and "cannot write" in err and "Traceback" not in err


def test_evaluation_holds_only_metrics():
    """evaluation/ sits below the predictor: none of its modules imports the predictor, training or the API."""
    import movie_genres.evaluation as evaluation

    for path in Path(evaluation.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        above = {m for m in imported if m.startswith(("movie_genres.predictor", "movie_genres.training", "movie_genres.api"))}
        assert not above, f"{path.name} imports {above}"
