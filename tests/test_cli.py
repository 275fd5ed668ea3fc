"""The CLI: train, evaluate, predict and report through a real subprocess, and argument errors in-process."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from movie_genres.cli import main

TINY = ["vocab_size=50", "sequence_length=12", "embedding_dim=8", "lstm_units=4", "batch_size=16", "min_positives=2", "verbose=0",
        "workers=1", "text_encoder=minilm"]


def cli(*args, cwd=None, check=True):
    env = {**os.environ, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "torch")}
    proc = subprocess.run([sys.executable, "-m", "movie_genres", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def in_process(capsys, *args) -> tuple[int, str]:
    """``movie-genres ARGS`` in this process: (exit code, stderr). argparse errors exit through SystemExit."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.slow
def test_train_evaluate_predict_report(tmp_path, tiny_data, cache_dir):
    run = tmp_path / "bilstm"
    # config items anywhere on the line (before the verb too), -q after the verb, --output for the run folder
    out = cli(TINY[0], "train", *TINY[1:3], "--model", "bilstm", "-q", "--data", tiny_data, *TINY[3:], "--output", run, "--epochs", "1",
              f"cache_dir={cache_dir}")
    assert out.stdout.strip().endswith(str(run)) and (run / "model.keras").exists()
    assert "INFO" not in out.stderr
    config = json.loads((run / "config.json").read_text())
    assert (config["vocab_size"], config["sequence_length"], config["lstm_units"], config["workers"]) == (50, 12, [4], 1)

    evaluated = cli("evaluate", run, "--data", tiny_data, "--output", tmp_path / "eval.json")
    assert "INFO" in evaluated.stderr  # without -q, the summary is logged
    shown = json.loads(evaluated.stdout)
    metrics = json.loads((tmp_path / "eval.json").read_text())
    # the run's training films are left out and counted: only its validation films are scored
    assert metrics["n_films"] + metrics["excluded_training_films"] == 60 and metrics["n_skipped"] == 0 and "at_0_5" in metrics
    assert metrics["n_films"] == json.loads((run / "metrics.json").read_text())["n_films"]
    one, two = metrics["baselines"]  # always the most common label; always the two most common
    assert one.startswith("always ") and two.startswith(one + " + ")
    assert shown == {k: v for k, v in metrics.items() if k not in ("per_genre", "baselines")}  # stdout = the file, less two tables

    pred = json.loads(cli("predict", run, "--overview", "A funny silly joke", "--output", tmp_path / "one.json").stdout)
    assert json.loads((tmp_path / "one.json").read_text()) == pred  # --output: the verb's output, here one film's answer
    assert list(pred["probabilities"]) == json.loads((run / "genres.json").read_text())["genres"] and pred["inputs_used"] == ["overview"]
    # the decided genres are the run's: probability at or above its threshold among learned genres, else the top one
    meta = json.loads((run / "genres.json").read_text())
    saved = json.loads((run / "thresholds.json").read_text())
    thr = dict(zip(saved["genres"], saved["thresholds"]))
    learned = [g for g, t in zip(meta["genres"], meta["trained"]) if t]
    probs = pred["probabilities"]
    above = {g for g in learned if probs[g] >= thr[g]}
    expected = above or {max(learned, key=probs.get)}
    borderline = {g for g in learned if abs(probs[g] - thr[g]) < 1e-3}
    assert set(pred["genres"]) - borderline == expected - borderline and pred["genres"]

    cli("report", run, "--output", tmp_path / "report.html", "--data", tiny_data)
    html = (tmp_path / "report.html").read_text()
    assert "bilstm" in html and two in html and 'id="samples"' in html


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--model", "cnx"], "did you mean 'cnn'"),
        (["train", "--model", "cnn", "--data", "/nonexistent", "epochs=1"], "does not exist"),
        (["train", "--model", "cnn", "epoch=1"], "did you mean 'epochs'"),
        (["train", "--model", "text,cnx"], "did you mean 'cnn'"),
        (["train", "--model", "cnn", "epochs"], "key=value"),
        (["evaluate", "/nonexistent-run"], "does not exist"),
        (["predict", "/nonexistent-run", "--overview", "x"], "does not exist"),
        (["train", "--epochs", "many"], "invalid int value: 'many'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["predict"], "the following arguments are required: run_dir"),
        (["train", "limit=1", "--model", "bilstm"], "limit=1: must be 0 or >= 10"),
        (["train", "--model", "cnn", "dropout=1"], "dropout=1.0: must be >= 0 and < 1 (a Keras Dropout rate)"),
        (["train", "loss=mse"], "loss='mse': must be one of bce | focal | asl"),
        (["evaluate", "/some/run", "epochs=1"], "config items (epochs=1) are for train"),
        (["-q", "train", "-v"], "-q and -v do not go together"),
        (["train", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_bad_arguments_give_one_clear_line(capsys, args, message):
    code, err = in_process(capsys, *args)
    errors = [line for line in err.splitlines() if line.startswith("movie-genres") and ": error: " in line]
    assert code == 2 and len(errors) == 1 and message in errors[0] and "Traceback" not in err, err


def test_a_comma_list_of_models_is_one_job(capsys, monkeypatch, tmp_path):
    import movie_genres as mg

    seen = {}
    monkeypatch.setattr(mg, "train_all", lambda data, out, epochs, **kw: seen.update(kw, out=out) or tmp_path)
    code, err = in_process(capsys, "train", "--model", "text, image,ensemble", "--out", tmp_path, "text_encoder=mpnet")
    assert code == 0, err
    assert seen["models"] == ["text", "image", "ensemble"] and seen["text_encoder"] == "mpnet" and seen["out"] == str(tmp_path)


def test_output_out_alias_flags_after_the_verb_and_items_anywhere(capsys, monkeypatch, tmp_path):
    import movie_genres as mg

    seen = []
    monkeypatch.setattr(mg, "train_all", lambda data, out, epochs, **kw: seen.append({**kw, "out": out, "epochs": epochs}) or tmp_path)
    for args in (["augment=false", "train", "--model", "text,image", "-v", "--output", tmp_path, "seed=3", "--epochs", "2"],
                 ["train", "seed=3", "--model", "text,image", "--out", tmp_path, "--epochs", "2", "augment=false", "-v"]):
        code, err = in_process(capsys, *args)
        assert code == 0, err
    assert seen[0] == seen[1]
    assert (seen[0]["out"], seen[0]["epochs"], seen[0]["seed"], seen[0]["augment"]) == (str(tmp_path), 2, "3", "false")
    # both: --epochs wins, and epochs reaches train_all once (twice would be a TypeError)
    code, err = in_process(capsys, "train", "epochs=3", "--model", "text,image", "--epochs", "2")
    assert code == 0 and seen[-1]["epochs"] == 2, err
    code, err = in_process(capsys, "train", "epochs=3", "--model", "text,image")
    assert code == 0 and seen[-1]["epochs"] == "3", err


def test_version_and_config_listing():
    from movie_genres import __version__
    from movie_genres.config import Config, describe

    assert cli("--version").stdout.strip() == f"movie-genres {__version__}"
    table = cli("config").stdout.splitlines()
    assert table[0].split() == ["key", "default", "valid", "why"]
    rows = {line.split()[0]: line for line in table[1:]}
    assert list(rows) == [f.name for f in dataclasses.fields(Config)]  # every key, in declaration order
    assert rows["limit"].split()[:5] == ["limit", "0", "0", "or", ">="] and "smoke runs" in rows["limit"]
    assert "(cnn: true)" in rows["pos_weight"]  # a model's own default is shown
    assert json.loads(cli("config", "--json").stdout) == describe()


def test_a_bad_config_value_fails_before_any_work(tmp_path, tiny_data):
    proc = cli("train", "--model", "bilstm", "--data", tiny_data, "--output", tmp_path / "run", "limit=1", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "limit=1: must be 0 or >= 10 (fewer films leave no validation split" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_read_only_output_folder_is_one_clear_error(tmp_path, tiny_data):
    if os.geteuid() == 0:
        # root ignores permission bits; a file where the folder should be fails the same way for everyone
        blocker = tmp_path / "ro"
        blocker.write_text("a file, not a folder")
        target = blocker / "run"
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = ro / "run"
    proc = cli("train", "--model", "bilstm", "--data", tiny_data, "--out", target, *TINY, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "cannot write" in proc.stderr
