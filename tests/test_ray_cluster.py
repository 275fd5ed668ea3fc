"""Ray past one machine: a two-node cluster (``ray.cluster_utils.Cluster``: a head and one more node, 1 CPU each),
joined by ``--address``, gives the local engine's answers for ``predict`` and ``encode``; an actor killed by its pid
mid-job ends in a clear error or a correct complete output, in bounded time, with no row twice and none lost.

Kept small (a tiny run on synthetic films) so CI's whole suite stays well under its time limit."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import synthetic_rows, write_dataset

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")

CLI = str(Path(sys.executable).with_name("movie-genres"))
JOB_SECONDS = 600  # every job here is bounded: a hang fails the test instead of holding CI (a loaded 2-core machine took 300+)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from ray.cluster_utils import Cluster

    cache = tmp_path_factory.mktemp("cluster-cache")
    old = {k: os.environ.get(k) for k in ("MOVIE_GENRES_CACHE", "RAY_USAGE_STATS_ENABLED")}
    os.environ.update(MOVIE_GENRES_CACHE=str(cache), RAY_USAGE_STATS_ENABLED="0")  # the nodes' workers inherit them
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    yield c
    c.shutdown()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def films(tmp_path_factory, tiny_config):
    """A tiny fusion run (MiniLM + EfficientNet-Lite0) and a manifest of 48 synthetic films."""
    from movie_genres import train

    base = tmp_path_factory.mktemp("cluster-films")
    rows = synthetic_rows(48, seed=3)
    data = write_dataset(base / "data", rows)
    cfg = {k: v for k, v in tiny_config.items() if k != "epochs"}
    run = train("early", data, base / "run", epochs=1, image_encoders="effnet-lite0", cache_dir=str(base / "cache"), **cfg)
    manifest = base / "films.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Id", "poster", "overview"])
        for r in rows:
            w.writerow([r["Id"], str(data / "Images" / f"{r['Id']}.jpg"), r["Overview"]])
    return {"run": run, "manifest": manifest, "ids": [r["Id"] for r in rows]}


def _cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, "-q", *map(str, args)], capture_output=True, text=True, timeout=JOB_SECONDS,
                          env={**os.environ, **(env or {})})


def _probs(table) -> np.ndarray:
    df = table.to_pandas()
    return df[[c for c in df.columns if c.startswith("prob_")]].to_numpy(dtype=float)


@pytest.fixture(scope="module")
def local_answers(films, tmp_path_factory):
    """The local engine's output for the films (what every Ray job here must give)."""
    out = tmp_path_factory.mktemp("local") / "local.parquet"
    done = _cli("predict", films["run"], "--manifest", films["manifest"], "--output", out)
    assert done.returncode == 0, done.stderr
    return pq.read_table(out)


def _same_answers(got, expected) -> None:
    assert got.column("Id").to_pylist() == expected.column("Id").to_pylist()
    assert got.column("status").to_pylist() == expected.column("status").to_pylist()
    np.testing.assert_allclose(_probs(got), _probs(expected), atol=1e-5)
    assert got.column("genres").to_pylist() == expected.column("genres").to_pylist()


def test_two_node_cluster_predicts_the_local_engines_answers(cluster, films, local_answers, tmp_path):
    out = tmp_path / "ray.parquet"
    t0 = time.monotonic()
    done = _cli("predict", films["run"], "--manifest", films["manifest"], "--output", out, "--engine", "ray",
                "--address", cluster.address, "--actors", "2", "--batch-size", "8")
    assert done.returncode == 0, done.stderr
    seconds = time.monotonic() - t0
    got = pq.read_table(out)
    assert got.num_rows == len(films["ids"]) == len(set(got.column("Id").to_pylist()))
    _same_answers(got, local_answers)
    summary = json.loads(Path(f"{out}.summary.json").read_text())
    assert summary["engine"] == "ray" and summary["actors"] == 2 and summary["cluster_cpus"] == 2.0, summary
    print(f"two-node cluster: {len(films['ids'])} films in {seconds:.1f} s (with the actors' start)")


def test_two_node_cluster_encodes_the_local_engines_features(cluster, films, tmp_path):
    from movie_genres.features.encoders import get_encoder, load_cache

    names = ["minilm", "effnet-lite0"]
    got = {}
    for engine in ("local", "ray"):
        cache = tmp_path / engine
        extra = ["--engine", "ray", "--address", cluster.address, "--actors", "2"] if engine == "ray" else []
        done = _cli("encode", "--manifest", films["manifest"], "--encoders", ",".join(names), *extra,
                    env={"MOVIE_GENRES_CACHE": str(cache)})
        assert done.returncode == 0, done.stderr
        got[engine] = {n: dict(zip(*[list(x) for x in load_cache(get_encoder(n), cache)][:2])) for n in names}
    for n in names:
        assert len(got["ray"][n]) == len(got["local"][n]) > 0
        assert set(got["ray"][n]) == set(got["local"][n])
        for key, feats in got["local"][n].items():
            np.testing.assert_allclose(got["ray"][n][key], feats, atol=1e-5)


def _actor_pids() -> list[int]:
    """The pids of this machine's batch-predictor actors (Ray names their processes after the class)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"_Tagger" in cmd:
                pids.append(int(entry.name))
    return pids


def test_an_actor_killed_mid_job_ends_clearly_with_no_row_twice_or_lost(cluster, films, local_answers, tmp_path):
    out = tmp_path / "killed.parquet"
    script = ("import sys, json; from movie_genres.catalogue.job import predict_catalogue as p; "
              "from movie_genres.catalogue.errors import EngineError\n"
              "try:\n"
              f"    s = p({str(films['run'])!r}, manifest={str(films['manifest'])!r}, output={str(out)!r}, engine='ray', "
              f"address={cluster.address!r}, actors=2, batch_size=2, part_rows=8, progress=False)\n"
              "    print(json.dumps({'rows': s['rows']}))\n"
              "except EngineError as e:\n"
              "    print('ENGINE ERROR:', e); sys.exit(3)\n")
    job = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    parts = Path(f"{out}.parts")
    deadline, killed = time.monotonic() + JOB_SECONDS, None
    try:
        while time.monotonic() < deadline and job.poll() is None:
            pids = _actor_pids()
            if pids and any(parts.glob("part-*.parquet")):  # the job is under way: a part is written already
                killed = pids[0]
                os.kill(killed, signal.SIGKILL)
                break
            time.sleep(0.2)
        stdout, stderr = job.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if job.poll() is None:
            job.kill()
    assert killed is not None, f"the job ended before an actor could be killed: {stdout} {stderr[-2000:]}"
    if job.returncode == 3:  # a clear error: the parts written so far are kept, and the same command continues
        assert "the Ray job failed" in stdout and "continues from them" in stdout, stdout
        again = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=JOB_SECONDS)
        assert again.returncode == 0, again.stdout + again.stderr
        print("killed actor: the job ended with a clear error; run again, it completed")
    else:  # Ray restarted the actor and redid its blocks
        assert job.returncode == 0, stdout + stderr[-2000:]
        print("killed actor: Ray restarted it and the job completed")
    got = pq.read_table(out)
    ids = got.column("Id").to_pylist()
    assert len(ids) == len(set(ids)) == len(films["ids"])  # no row twice, none lost
    _same_answers(got, local_answers)
