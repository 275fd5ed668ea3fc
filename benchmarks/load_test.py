"""Load test of the prediction service, on 127.0.0.1 only.

    python benchmarks/load_test.py RUN_DIR [--requests 2000] [--concurrency 8] [--max-seconds 300]
    python benchmarks/load_test.py --fake                 # HTTP layer only (tests/serve_helpers.FakePredictor)
    python benchmarks/load_test.py --url http://127.0.0.1:8000 --pid 1234   # a server that is already running

It starts ``python -m movie_genres -q serve RUN_DIR --port P`` (the ``movie-genres serve`` command), waits for /health
to say the model has warmed up, sends a bounded number of requests (a mix of poster+overview, poster-only and
overview-only; the kinds the model cannot read are left out; ``--include-bad`` adds truncated posters that must be
refused with 422) from ``--concurrency`` threads, stops dispatching after
``--max-seconds``, and prints a markdown table: throughput, p50/p99 latency, errors, and the server's resident memory
at start, middle and end (flat memory = no leak). The client uses only the standard library and httpx.
Exit status 1 if any request failed.
"""
from __future__ import annotations

import argparse
import itertools
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx

ROOT = Path(__file__).resolve().parents[1]
BAD = "bad input (422 expected)"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
OVERVIEWS = [
    "A retired hitman is pulled back into the underworld when his old crew kidnaps his daughter.",
    "Two strangers meet on a night train across Europe and talk until dawn, knowing they may never meet again.",
    "In a small coastal town, a marine biologist discovers that something enormous is hunting the fishing boats.",
    "A family of mice must save their home from a greedy cat and the wrecking ball that is coming on Monday.",
    "After the war, a young widow runs her late husband's ranch and faces the cattle baron who wants her land.",
    "An astronaut stranded on Mars must find a way to survive until a rescue mission can reach him.",
    "A documentary following three teenagers who train for the national spelling bee.",
    "When a mysterious fog swallows the village, the townspeople hear voices of those they have lost.",
]


# ----------------------------------------------------------------------------------------------------------------------
# inputs (stdlib only: PNG posters written with zlib)


def synthetic_png(width: int, height: int, seed: int) -> bytes:
    rng = random.Random(seed)
    r0, g0, b0 = (rng.randrange(256) for _ in range(3))
    rows = []
    for y in range(height):
        shade = (y * 255) // max(1, height - 1)
        row = bytearray(b"\x00")  # filter type 0
        for x in range(width):
            row += bytes(((r0 + shade) % 256, (g0 + x) % 256, (b0 + (x ^ y)) % 256))
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows), 6))
            + chunk(b"IEND", b""))


def load_posters(folder: str | None) -> list[tuple[str, bytes, str]]:
    if folder:
        files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
        if not files:
            sys.exit(f"no .jpg/.png/.webp posters in {folder}")
        types = {".png": "image/png", ".webp": "image/webp"}
        return [(p.name, p.read_bytes(), types.get(p.suffix.lower(), "image/jpeg")) for p in files[:50]]
    sizes = [(182, 268), (300, 450), (500, 750), (120, 180)]  # typical poster thumbnails
    return [(f"synthetic{i}.png", synthetic_png(w, h, i), "image/png") for i, (w, h) in enumerate(sizes)]


# ----------------------------------------------------------------------------------------------------------------------
# server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: argparse.Namespace, port: int) -> subprocess.Popen:
    if args.fake:
        cmd = [sys.executable, str(ROOT / "tests" / "serve_helpers.py"), "--port", str(port)]
    else:
        cmd = [sys.executable, "-m", "movie_genres", "-q", "serve", args.run_dir, "--port", str(port)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    log = open(args.server_log, "wb") if args.server_log else subprocess.DEVNULL
    print(f"starting: {' '.join(cmd)}", file=sys.stderr)
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT if args.server_log else log)


def wait_ready(url: str, proc: subprocess.Popen | None, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            sys.exit(f"the server exited with status {proc.returncode} before answering /health")
        try:
            r = httpx.get(url + "/health", timeout=2)
            if r.status_code == 200:
                return r.json()
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    sys.exit(f"the server did not answer {url}/health within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ----------------------------------------------------------------------------------------------------------------------
# memory


def rss_bytes(pid: int) -> int | None:
    try:
        import psutil  # type: ignore[import-not-found]

        return psutil.Process(pid).memory_info().rss
    except ImportError:
        pass
    except Exception:  # noqa: BLE001 - process gone
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class MemorySampler(threading.Thread):
    def __init__(self, pid: int | None, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.peak = 0
        self.samples: list[int] = []
        self._halt = threading.Event()

    def now(self) -> int | None:
        return rss_bytes(self.pid) if self.pid else None

    def run(self) -> None:
        while not self._halt.is_set():
            value = self.now()
            if value:
                self.peak = max(self.peak, value)
                self.samples.append(value)
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join()


# ----------------------------------------------------------------------------------------------------------------------
# load


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, seconds: float, error: str | None) -> None:
        with self.lock:
            self.done += 1
            if error is None:
                self.latencies.setdefault(kind, []).append(seconds)
            else:
                self.errors[kind] = self.errors.get(kind, 0) + 1
                if len(self.error_samples) < 5:
                    self.error_samples.append(f"{kind}: {error}")


def build_request(kind: str, i: int, posters: list, rng: random.Random) -> dict:
    poster = posters[i % len(posters)]
    overview = OVERVIEWS[i % len(OVERVIEWS)] + f" ({rng.randrange(10**6)})"  # vary the text a little
    if kind == "poster+overview":
        return {"files": {"poster": poster}, "data": {"overview": overview}}
    if kind == "poster":
        return {"files": {"poster": poster}}
    if kind == BAD:  # a truncated poster: the service must answer 422 and keep going
        name, data, ctype = poster
        return {"files": {"poster": (name, data[: len(data) // 2], ctype)}}
    return {"files": {"overview": (None, overview)}}  # multipart, like the page


def run_load(url: str, kinds: list[str], posters: list, n: int, concurrency: int, max_seconds: float,
             on_half: callable) -> tuple[Results, float]:
    results = Results()
    counter = itertools.count()
    deadline = time.monotonic() + max_seconds
    half_fired = threading.Event()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=url, timeout=120) as http:
            while time.monotonic() < deadline:
                i = next(counter)
                if i >= n:
                    return
                kind = kinds[i % len(kinds)]
                request = build_request(kind, i, posters, rng)
                started = time.perf_counter()
                try:
                    r = http.post("/predict", **request)
                    expected = 422 if kind == BAD else 200
                    error = None if r.status_code == expected else f"HTTP {r.status_code}: {r.text[:200]}"
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}"
                results.add(kind, time.perf_counter() - started, error)
                if results.done >= n // 2 and not half_fired.is_set():
                    half_fired.set()
                    on_half()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered) + 0.5)) - 1))]


def mb(value: int | None) -> str:
    return f"{value / 2**20:.1f}" if value else "n/a"


def report(results: Results, wall: float, memory: dict[str, int | None], health: dict, args: argparse.Namespace,
           requested: int) -> str:
    all_lat = [x for v in results.latencies.values() for x in v]
    n_err = sum(results.errors.values())
    lines = [
        f"## Load test: {health.get('model')} {health.get('version')} "
        f"({args.concurrency} concurrent clients, {time.strftime('%Y-%m-%d %H:%M')})",
        "",
        "| metric | value |",
        "| --- | --- |",
        f"| requests planned / completed | {requested} / {results.done} |",
        f"| errors | {n_err} |",
        f"| wall time | {wall:.2f} s |",
        f"| throughput | {results.done / wall:.1f} req/s |" if wall > 0 else "| throughput | n/a |",
        f"| latency p50 | {percentile(all_lat, 50) * 1000:.1f} ms |",
        f"| latency p99 | {percentile(all_lat, 99) * 1000:.1f} ms |",
        f"| latency max | {max(all_lat) * 1000 if all_lat else float('nan'):.1f} ms |",
        f"| server RSS at start / middle / end | {mb(memory['start'])} / {mb(memory['middle'])} / "
        f"{mb(memory['end'])} MB |",
        f"| server RSS peak (sampled during the run) | {mb(memory['peak'])} MB |",
        "",
        "| request kind | ok | errors | p50 ms | p99 ms |",
        "| --- | --- | --- | --- | --- |",
    ]
    for kind in sorted(set(results.latencies) | set(results.errors)):
        lat = results.latencies.get(kind, [])
        lines.append(f"| {kind} | {len(lat)} | {results.errors.get(kind, 0)} | {percentile(lat, 50) * 1000:.1f} | "
                     f"{percentile(lat, 99) * 1000:.1f} |")
    if results.done < requested:
        lines += ["", f"Stopped after --max-seconds {args.max_seconds:g}: {results.done} of {requested} requests."]
    if results.error_samples:
        lines += ["", "First errors:", *[f"- `{e}`" for e in results.error_samples]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", nargs="?", help="run folder to serve (not needed with --fake or --url)")
    parser.add_argument("--requests", type=int, default=2000, help="total requests (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent clients (default: %(default)s)")
    parser.add_argument("--max-seconds", type=float, default=300, help="stop dispatching after this (default: 300)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed requests first (default: %(default)s)")
    parser.add_argument("--posters", help="folder of real poster files to send (default: synthetic PNGs)")
    parser.add_argument("--include-bad", action="store_true",
                        help="also send truncated posters (expects 422) to show bad input costs no memory")
    parser.add_argument("--fake", action="store_true", help="serve the tests' FakePredictor (HTTP layer only)")
    parser.add_argument("--url", help="target a running server on this machine instead of starting one")
    parser.add_argument("--pid", type=int, help="with --url: the server's process id, for its memory")
    parser.add_argument("--startup-timeout", type=float, default=180, help="seconds to wait for /health")
    parser.add_argument("--server-log", help="write the started server's output to this file")
    parser.add_argument("--out", help="also write the markdown table to this file")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be at least 1")
    if not (args.run_dir or args.fake or args.url):
        parser.error("give a RUN_DIR, --fake or --url")

    proc = None
    if args.url:
        host = urlparse(args.url).hostname
        if host not in LOOPBACK:
            parser.error(f"--url must point at this machine (127.0.0.1), not {host}")
        url, pid = args.url.rstrip("/"), args.pid
    else:
        port = free_port()
        proc = start_server(args, port)
        url, pid = f"http://127.0.0.1:{port}", proc.pid
    try:
        health = wait_ready(url, proc, args.startup_timeout)
        modalities = set(health.get("modalities") or ["poster", "overview"])
        kinds = [k for k in ("poster+overview", "poster", "overview") if set(k.split("+")) <= modalities or
                 (k == "poster+overview" and modalities)]
        if args.include_bad:
            kinds.append(BAD)
        posters = load_posters(args.posters)
        if args.warmup:
            run_load(url, kinds, posters, args.warmup, min(args.concurrency, args.warmup), args.max_seconds,
                     lambda: None)
        sampler = MemorySampler(pid)
        memory: dict[str, int | None] = {"start": sampler.now(), "middle": None}
        sampler.start()
        results, wall = run_load(url, kinds, posters, args.requests, args.concurrency, args.max_seconds,
                                 lambda: memory.__setitem__("middle", sampler.now()))
        memory["end"] = sampler.now()
        sampler.stop()
        memory["peak"] = sampler.peak or None
    finally:
        if proc is not None:
            stop_server(proc)
    table = report(results, wall, memory, health, args, args.requests)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n", encoding="utf-8")
    return 1 if sum(results.errors.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
