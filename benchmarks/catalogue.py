"""Catalogue tagging speed and memory: films/s for ``--engine local`` and ``--engine ray`` next to the encoder-only
rate of the same run on the same machine (the limit), and the memory of the whole process tree while a large
catalogue (the shared films repeated under new Ids) is tagged.

    python benchmarks/catalogue.py RUN_DIR [RUN_DIR ...] [--films 20000] [--ray-films 2000] [--out /tmp/catalogue-bench]
        [--engines local,ray,ray-cluster]

``ray-cluster`` is ``--engine ray --address`` on a two-node Ray cluster started on this machine
(``ray.cluster_utils.Cluster``: a head and a second node, one CPU each, as in tests/test_ray_cluster.py).

Several runs (e.g. the fp32 and the int8 default) are measured one after another in the same benchmark run, each
with its own encoder-only rate, so their ratio is measured under the same conditions.

Each engine runs as its own ``movie-genres predict`` process; its resident memory (the process and all its children:
Ray's workers too) is sampled every half second. Results are printed as JSON and written to OUT/results.json.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

from movie_genres.runs import resolve_run

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "multimodal-imdb"


def manifest(out: Path, films: int, data: Path) -> Path:
    """A manifest of ``films`` rows: the shared films in order, repeated under new Ids (``<Id>-r<k>``)."""
    rows = list(csv.DictReader(open(data / "IMDB_overview_genres.csv", encoding="utf-8")))
    path = out / f"catalogue-{films}.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Id", "poster", "overview"])
        for i in range(films):
            r = rows[i % len(rows)]
            w.writerow([f"{r['Id']}-r{i // len(rows)}", str(data / "Images" / f"{r['Id']}.jpg"), r["Overview"]])
    return path


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def run_engine(run: Path, catalogue: Path, out: Path, engine: str, extra: list[str]) -> dict:
    output = out / f"tags-{engine}-{catalogue.stem}.parquet"
    for p in (output, output.with_name(output.name + ".summary.json")):
        p.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "movie_genres", "-q", "predict", str(run), "--manifest", str(catalogue), "--output", str(output),
           "--engine", engine, *extra]
    samples: list[tuple[float, int]] = []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def sample() -> None:
        while proc.poll() is None:
            samples.append((time.perf_counter() - t0, _tree_rss(proc.pid)))
            time.sleep(0.5)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    stdout, _ = proc.communicate()
    thread.join()
    if proc.returncode != 0:
        raise SystemExit(f"{engine} failed ({proc.returncode}): {' '.join(cmd)}")
    summary = json.loads(stdout)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)  # every process of the job, Ray's too
    mib = [rss / 2**20 for _, rss in samples]
    quarter = [max(mib[int(len(mib) * q / 4) : int(len(mib) * (q + 1) / 4)] or [0]) for q in range(4)]
    return {"engine": engine, "films": summary["films"], "ok": summary["ok"], "wall_seconds": round(wall, 1),
            "job_seconds": summary["seconds"], "films_per_second": summary["films_per_second"],
            "films_per_second_wall": round(summary["films"] / wall, 2), "cpu_ms_per_film": round(1000 * cpu / summary["films"], 1),
            "peak_rss_mib": round(max(mib or [0])),
            "peak_rss_mib_by_quarter": [round(q) for q in quarter],
            **{k: summary[k] for k in ("actors", "cpus_per_actor", "threads_per_actor") if k in summary}}


def encoder_rate(run: Path, data: Path, films: int = 96) -> dict:
    """Films/s of the run's encoders alone on decoded posters and overviews (batches as the batch predictor runs them)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from movie_genres.catalogue.ray_engine import encoder_names
    from movie_genres.features.encoders import get_encoder
    from movie_genres.features.posters import open_poster

    rows = list(csv.DictReader(open(data / "IMDB_overview_genres.csv", encoding="utf-8")))[:films]
    images = [open_poster(data / "Images" / f"{r['Id']}.jpg") for r in rows]
    texts = [r["Overview"] for r in rows]
    per, cpu = {}, {}
    for name in encoder_names(run):
        enc = get_encoder(name)
        items = texts if enc.modality == "overview" else images
        enc.encode(items[:8])  # loaded and warm
        t0, c0 = time.perf_counter(), time.process_time()
        for start in range(0, films, 64):
            enc.encode(items[start : start + 64])
        per[name] = (time.perf_counter() - t0) / films
        cpu[name] = (time.process_time() - c0) / films
    rate = round(1 / sum(per.values()), 2) if per else None  # a CNN / BiLSTM run has no pretrained encoders
    return {"ms_per_film": {k: round(v * 1000, 1) for k, v in per.items()}, "films_per_second": rate,
            "cpu_ms_per_film": round(1000 * sum(cpu.values()), 1)}


class TwoNodeCluster:
    """A head and a second node on this machine, one CPU each; stopped on exit (only what it started)."""

    def __enter__(self) -> str:
        from ray.cluster_utils import Cluster

        os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
        self.cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        self.cluster.add_node(num_cpus=1)
        self.cluster.wait_for_nodes()
        return self.cluster.address

    def __exit__(self, *exc) -> None:
        self.cluster.shutdown()


def engine_run(run: Path, catalogue: Path, out: Path, engine: str) -> dict:
    if engine != "ray-cluster":
        return run_engine(run, catalogue, out, engine, [])
    with TwoNodeCluster() as address:
        result = run_engine(run, catalogue, out, "ray", ["--address", address])
    # the nodes' worker processes are the cluster's, not the job's children: their CPU time is not in the job's
    result["cpu_ms_per_film"] = None
    return {**result, "engine": "ray-cluster (two nodes, 1 CPU each)"}


def bench_run(run_arg: str, args, out: Path, data: Path) -> dict:
    run = Path(run_arg) if (Path(run_arg) / "featurizer.json").exists() else resolve_run(run_arg)  # a folder: its best
    results = {"run": str(run), "encoders_only": encoder_rate(run, data)}
    print(json.dumps(results), flush=True)
    for engine in args.engines.split(","):
        n = args.films if engine == "local" else args.ray_films
        results[engine] = engine_run(run, manifest(out, n, data), out, engine)
        print(json.dumps(results[engine]), flush=True)
    limit = results["encoders_only"]["films_per_second"]
    for engine in args.engines.split(","):
        results[engine]["share_of_encoder_rate"] = round(results[engine]["films_per_second"] / limit, 3) if limit else None
        if limit and results[engine]["cpu_ms_per_film"]:  # the same ratio in CPU time, which other work on a shared machine disturbs far less than wall time
            results[engine]["share_of_encoder_rate_cpu"] = round(results["encoders_only"]["cpu_ms_per_film"] / results[engine]["cpu_ms_per_film"], 3)
    results["encoders_only_after"] = encoder_rate(run, data) if limit else None  # again: the machine's load moves
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", nargs="+", help="run folders (or folders of runs: their best), measured one after another")
    ap.add_argument("--films", type=int, default=20_000, help="local engine catalogue size")
    ap.add_argument("--ray-films", type=int, default=2_000, help="ray engine catalogue size")
    ap.add_argument("--data", default=str(SHARED))
    ap.add_argument("--out", default="/tmp/catalogue-bench")
    ap.add_argument("--engines", default="local,ray")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data)
    runs = [bench_run(r, args, out, data) for r in args.run]
    results = {"machine": f"{os.cpu_count()} CPUs", "load_average": os.getloadavg(), "runs": runs}
    if len(runs) > 1:
        first = runs[0]
        for r in runs[1:]:
            for engine in args.engines.split(","):
                r[engine]["films_per_second_vs_first_run"] = round(r[engine]["films_per_second"] / first[engine]["films_per_second"], 3)
                if r[engine]["cpu_ms_per_film"] and first[engine]["cpu_ms_per_film"]:
                    r[engine]["cpu_ms_vs_first_run"] = round(r[engine]["cpu_ms_per_film"] / first[engine]["cpu_ms_per_film"], 3)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
