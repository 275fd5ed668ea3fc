"""A run killed mid-training from a subprocess resumes and ends with the same artifacts as a straight run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from conftest import synthetic_rows, write_dataset

ARGS = ["epochs=3", "batch_size=8", "min_positives=2", "verbose=0", "workers=1", "patience=10", "image_size=32"]


def _train_cmd(data, out, cache):
    # --retrain: the second run must train (not copy the first from the run cache) to be killed mid-way
    return [sys.executable, "-m", "movie_genres", "-q", "train", "--model", "cnn", "--retrain", "--data", str(data), "--out", str(out),
            f"cache_dir={cache}", *ARGS]


@pytest.mark.slow
def test_kill_and_resume_matches_a_straight_run(tmp_path, cache_dir):
    data = write_dataset(tmp_path / "data", synthetic_rows(160, seed=5))
    env = {**os.environ, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "torch")}
    straight = tmp_path / "straight"
    subprocess.run(_train_cmd(data, straight, cache_dir), check=True, env=env, capture_output=True, timeout=600)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(data, killed, cache_dir), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state = killed / "checkpoint" / "state.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and json.loads(state.read_text())["epochs_done"] >= 1:
            time.sleep(0.2)  # inside epoch 2
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "metrics.json").exists()
    done = json.loads(state.read_text())["epochs_done"]
    assert 1 <= done < 3

    resume = subprocess.run([sys.executable, "-m", "movie_genres", "-q", "train", "--resume", str(killed)], env=env, capture_output=True, text=True,
                            timeout=600)
    assert resume.returncode == 0, resume.stderr
    assert not (killed / "checkpoint").exists() and not (straight / "checkpoint").exists()  # finished: nothing to resume

    skip = {"plots", "samples.html"}
    assert {p.name for p in killed.iterdir()} - skip == {p.name for p in straight.iterdir()} - skip
    h1, h2 = pd.read_csv(straight / "history.csv"), pd.read_csv(killed / "history.csv")
    assert len(h1) == len(h2) == 3
    np.testing.assert_allclose(h1.to_numpy(), h2.to_numpy(), rtol=1e-4, atol=1e-5)
    p1, p2 = pd.read_csv(straight / "val_predictions.csv"), pd.read_csv(killed / "val_predictions.csv")
    assert p1["Id"].tolist() == p2["Id"].tolist()
    np.testing.assert_allclose(p1.drop(columns="Id").to_numpy(), p2.drop(columns="Id").to_numpy(), atol=1e-4)
    t1 = json.loads((straight / "thresholds.json").read_text())
    t2 = json.loads((killed / "thresholds.json").read_text())
    assert t1 == t2


def test_bilstm_checkpoint_resumes_in_a_fresh_process(tmp_path, cache_dir, tiny_config, monkeypatch):
    # The BiLSTM's checkpoint names the package's own LSTM layer: a new process must know it before loading.
    import movie_genres.training.train as train_module
    from movie_genres import train

    data = write_dataset(tmp_path / "data", synthetic_rows(60, seed=6))
    straight = train("bilstm", data, tmp_path / "straight", reuse=False, cache_dir=cache_dir, **tiny_config)
    assert not (straight / "checkpoint").exists()  # finished
    before = pd.read_csv(straight / "val_predictions.csv")

    def killed(*args, **kwargs):  # as if killed after its last epoch, before the run was written up
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "finish_run", killed)
    run = tmp_path / "run"
    with pytest.raises(SystemExit, match="train --resume"):
        train("bilstm", data, run, reuse=False, cache_dir=cache_dir, **tiny_config)
    monkeypatch.undo()
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert state["epochs_done"] == tiny_config["epochs"] and not (run / "metrics.json").exists()
    resume = subprocess.run([sys.executable, "-m", "movie_genres", "-q", "train", "--resume", str(run)], capture_output=True, text=True, timeout=600)
    assert resume.returncode == 0, resume.stderr
    assert (run / "metrics.json").exists() and not (run / "checkpoint").exists()
    after = pd.read_csv(run / "val_predictions.csv")
    np.testing.assert_allclose(before.drop(columns="Id").to_numpy(), after.drop(columns="Id").to_numpy(), atol=1e-6)
