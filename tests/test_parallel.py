"""`train --model all` with several worker processes: same runs as one at a time, failures contained."""
from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from movie_genres import train_all
from movie_genres.training.parallel import TrainingFailed, last_line, needs, schedule, train_parallel

MODELS = ("cnn", "bilstm", "text", "late")


def _probs(run) -> np.ndarray:
    return pd.read_csv(run / "val_predictions.csv").drop(columns="Id").to_numpy()


def test_schedule_starts_long_models_and_dependencies_first():
    assert schedule(["late", "ensemble", "bilstm", "gmu", "text", "early", "image", "cnn"]) == [
        "cnn", "image", "text", "bilstm", "gmu", "early", "ensemble", "late"]
    assert needs("ensemble", ["text", "gmu", "ensemble"]) == ["text", "gmu"]
    assert needs("late", ["late"]) == []  # trained alone, late trains its members itself
    assert needs("cnn", list(MODELS)) == []


def test_last_line_follows_progress_bars(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("INFO start\nEpoch 3/12\n 1/91 ━━ 10%\r \x1b[1m50/91\x1b[0m ━━ 55%\r\n")
    assert last_line(log) == "Epoch 3/12 50/91 ━━ 55%"  # the epoch it is in, without colour codes
    log.write_text("INFO start\nminilm features:  40%\rminilm features:  80%")
    assert last_line(log) == "minilm features:  80%"
    assert last_line(tmp_path / "missing.log") == ""


@pytest.mark.slow
def test_parallel_job_trains_the_same_runs_as_one_at_a_time(tmp_path, tiny_data, tiny_config, cache_dir, caplog):
    caplog.set_level(logging.INFO, logger="movie_genres")  # workers log at the caller's level
    settings = {**tiny_config, "cache_dir": cache_dir, "threads": 1}
    par = train_all(tiny_data, tmp_path / "par", models=MODELS, jobs=2, reuse=False, **settings)
    seq = train_all(tiny_data, tmp_path / "seq", models=MODELS, jobs=1, reuse=False, **settings)
    job = json.loads((par / "job.json").read_text())
    assert (job["jobs"], job["threads"], job["failed"]) == (2, 1, {})
    assert set(job["steps"]) == {*MODELS, "report"}
    assert not any(job["steps"][m]["reused"] for m in MODELS)
    for m in MODELS:
        np.testing.assert_allclose(_probs(par / m), _probs(seq / m), atol=1e-6)
        assert json.loads((par / m / "config.json").read_text())["threads"] == 1
        assert f"{m}: validation micro-F1" in (par / "logs" / f"{m}.log").read_text()  # each worker's output went to its log
    # late waited for text and found it in the run cache instead of training its member again
    assert "reused the identical finished run" in (par / "logs" / "late.log").read_text()
    assert "=== late: started" in caplog.text and "=== text: done" in caplog.text
    assert caplog.text.index("=== text: done") < caplog.text.index("=== late: started")
    assert (par / "report.html").exists() and json.loads((par / "best.json").read_text())["run"] in MODELS


@pytest.mark.slow
def test_a_failed_model_stops_only_the_models_that_need_it(tmp_path, tiny_data, tiny_config, cache_dir):
    settings = {**tiny_config, "cache_dir": cache_dir, "threads": 1}
    kwargs = {m: dict(data=tiny_data, out=tmp_path / m, **settings) for m in ("cnn", "text", "late")}
    kwargs["text"]["data"] = tmp_path / "no-such-dataset"
    done, failed = train_parallel(["cnn", "text", "late"], kwargs, tmp_path / "logs", jobs=2, threads=1)
    assert set(done) == {"cnn"} and (tmp_path / "cnn" / "metrics.json").exists()
    assert "no-such-dataset" in failed["text"] and "text.log" in failed["text"]
    assert failed["late"] == "not started: text failed"
    assert "Traceback" in (tmp_path / "logs" / "text.log").read_text()  # the worker's traceback is kept in its log
    assert "1 model(s) failed" in str(TrainingFailed({"text": failed["text"]}, tmp_path))


def test_cli_jobs_must_be_positive(tiny_data, tmp_path):
    r = subprocess.run([sys.executable, "-m", "movie_genres", "train", "--model", "all", "--jobs", "0", "--data", str(tiny_data),
                        "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "jobs must be at least 1" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists()  # nothing created for a bad argument


@pytest.mark.parametrize("cores,jobs", [(1, 1), (2, 2), (8, 2)])
def test_default_jobs(cores, jobs):
    from movie_genres.training.parallel import default_jobs

    assert default_jobs(cores) == jobs


def test_a_worker_stops_when_its_job_is_killed():
    """A worker whose job process is killed outright (no chance to stop its pool) exits instead of training on."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    worker = ("import sys; from movie_genres.training.parallel import _exit_with_parent; "
              "print('watching', flush=True); _exit_with_parent(int(sys.argv[1]), 0.05)")
    job = subprocess.Popen([sys.executable, "-c", "import os, subprocess, sys, time; "
                            f"p = subprocess.Popen([sys.executable, '-c', {worker!r}, str(os.getpid())]); "
                            "print(p.pid, flush=True); time.sleep(120)"],
                           stdout=subprocess.PIPE, text=True)
    pid = int(job.stdout.readline())
    assert job.stdout.readline().strip() == "watching"  # the worker's own line, through the inherited pipe
    status = Path(f"/proc/{pid}/status")
    assert status.exists() and "State:\tZ" not in status.read_text()
    job.send_signal(signal.SIGKILL)
    job.wait()
    deadline = time.monotonic() + 20
    while status.exists() and "State:\tZ" not in status.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not status.exists() or "State:\tZ" in status.read_text(), "the orphaned worker is still running"
