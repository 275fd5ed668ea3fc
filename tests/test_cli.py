"""The CLI through a subprocess: train, evaluate, predict, report and clear errors, on tiny synthetic data."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import synthetic_rows, write_dataset

TINY = ["vocab_size=50", "sequence_length=12", "embedding_dim=8", "lstm_units=4", "batch_size=16", "min_positives=2", "verbose=0", "workers=1"]


def cli(*args, cwd=None, check=True):
    env = {**os.environ, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "torch")}
    proc = subprocess.run([sys.executable, "-m", "movie_genres", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def test_train_evaluate_predict_report(tmp_path, tiny_data, cache_dir):
    run = tmp_path / "bilstm"
    out = cli("train", "--model", "bilstm", "--data", tiny_data, "--out", run, "--epochs", "1", f"cache_dir={cache_dir}", *TINY)
    assert out.stdout.strip().endswith(str(run)) and (run / "model.keras").exists()

    cli("evaluate", run, "--data", tiny_data, "--output", tmp_path / "eval.json")
    metrics = json.loads((tmp_path / "eval.json").read_text())
    assert metrics["n_films"] == 60 and "at_0_5" in metrics and 0 <= metrics["micro_f1"] <= 1

    pred = json.loads(cli("predict", run, "--overview", "A funny silly joke").stdout)
    assert len(pred["probabilities"]) == 25 and pred["genres"] and pred["inputs_used"] == ["overview"]

    cli("report", run, "--output", tmp_path / "report.html", "--data", tiny_data)
    html = (tmp_path / "report.html").read_text()
    assert "bilstm" in html and "always Drama + Comedy" in html


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--model", "cnx"], "did you mean 'cnn'"),
        (["train", "--model", "cnn", "--data", "/nonexistent", "epochs=1"], "does not exist"),
        (["train", "--model", "cnn", "epoch=1"], "did you mean 'epochs'"),
        (["evaluate", "/nonexistent-run"], "does not exist"),
        (["predict", "/nonexistent-run", "--overview", "x"], "does not exist"),
    ],
)
def test_bad_arguments_give_one_clear_line(args, message):
    proc = cli(*args, check=False)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


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
