"""The service's resident memory under concurrent /predict/batch requests with large posters, on 127.0.0.1 only.

    python benchmarks/service_memory.py [--rounds 12] [--concurrency 8] [--big 2] [--small 30] [--no-trim]

Serves the FakePredictor (``tests/serve_helpers.py``: the HTTP layer and the real poster decoding, no model), then
sends ``--rounds`` rounds of ``--concurrency`` concurrent /predict/batch requests, each with ``--big`` 36 MP JPEG posters
and ``--small`` ordinary ones (within the documented limits), and prints the server's RSS (``/proc/PID/status``) after
each round, its peak (VmHWM) and the RSS after the last round and 3 s of idling. RSS that climbs round after round and
stays up after idling, while the live Python objects do not grow, is heap fragmentation (freed memory the C
allocator keeps), not a leak. ``--no-trim`` sets ``MOVIE_GENRES_NO_MALLOC_TRIM=1`` in the server (the service then
skips its ``malloc_trim`` calls), to measure the difference; ``--env K=V`` passes more variables
(``MALLOC_ARENA_MAX=2``).
"""
from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def jpeg(width: int, height: int, seed: int) -> bytes:
    """A smooth poster-like JPEG (a gradient with a little noise): large in pixels, small in bytes."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(8, 6, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((width, height), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return buf.getvalue()


def rss(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for {pid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--big", type=int, default=2, help="36 MP posters per request")
    ap.add_argument("--small", type=int, default=30, help="ordinary (182x268) posters per request")
    ap.add_argument("--no-trim", action="store_true")
    ap.add_argument("--env", action="append", default=[], metavar="K=V")
    args = ap.parse_args(argv)

    big = [jpeg(4900, 7350, seed) for seed in range(args.big)]  # 36 MP each, ~108 MB once decoded
    small = [jpeg(182, 268, 100 + seed) for seed in range(args.small)]
    print(f"poster bytes: big {[len(b) // 1024 for b in big]} KB, small ~{len(small[0]) // 1024} KB" if big else "")
    files = [(f"poster_{i}", (f"p{i}.jpg", data, "image/jpeg")) for i, data in enumerate(big + small)]

    port = free_port()
    env = {**os.environ, **dict(kv.split("=", 1) for kv in args.env)}
    if args.no_trim:
        env["MOVIE_GENRES_NO_MALLOC_TRIM"] = "1"
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "serve_helpers.py"), "--port", str(port)], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.2)
        start = rss(proc.pid)
        print(f"rounds={args.rounds} concurrency={args.concurrency} big={args.big} small={args.small} "
              f"trim={'off' if args.no_trim else 'on'} env={args.env}")
        print(f"start RSS {start / 2**20:.0f} MB")
        errors: list[str] = []
        seconds: list[float] = []

        def one() -> None:
            t0 = time.perf_counter()
            r = httpx.post(url + "/predict/batch", files=files, timeout=300)
            seconds.append(time.perf_counter() - t0)
            if r.status_code != 200:
                errors.append(f"{r.status_code} {r.text[:200]}")

        series = []
        for k in range(args.rounds):
            threads = [threading.Thread(target=one) for _ in range(args.concurrency)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            series.append(rss(proc.pid))
            print(f"round {k + 1:3d}: RSS {series[-1] / 2**20:6.0f} MB")
        time.sleep(3)
        idle = rss(proc.pid)
        peak = rss(proc.pid, "VmHWM")
        print("| requests | trim | start MB | peak MB | after last round MB | after 3 s idle MB | p50 s | errors |")
        print(f"| {args.rounds * args.concurrency} | {'off' if args.no_trim else 'on'} | {start / 2**20:.0f} | "
              f"{peak / 2**20:.0f} | {series[-1] / 2**20:.0f} | {idle / 2**20:.0f} | {np.median(seconds):.1f} | "
              f"{len(errors)} |")
        for e in errors[:5]:
            print("error:", e)
        return 1 if errors else 0
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    sys.exit(main())
