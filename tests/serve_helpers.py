"""Shared helpers for the serve tests: a FakePredictor, test images, and a real uvicorn server in a thread.

``python tests/serve_helpers.py --port 8123`` serves the FakePredictor (used by ``benchmarks/load_test.py --fake``).
"""
from __future__ import annotations

import collections
import contextlib
import io
import random
import socket
import struct
import sys
import threading
import time
import types
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
try:
    import movie_genres.service.app  # noqa: F401
except ModuleNotFoundError:  # package not installed (pip install -e .): use the source tree
    sys.path.insert(0, str(ROOT / "src"))

from PIL import Image  # noqa: E402

GENRES = [
    "Action", "Adventure", "Animation", "Biography", "Comedy", "Crime", "Documentary", "Drama", "Family", "Fantasy",
    "History", "Horror", "Music", "Musical", "Mystery", "N/A", "News", "Reality-TV", "Romance", "Sci-Fi", "Short",
    "Sport", "Thriller", "War", "Western",
]


class FakePredictor:
    """The Predictor interface (docs/ARCHITECTURE.md) with deterministic probabilities that depend on the inputs.

    The same poster pixels and overview always give the same answer; different inputs give different answers. The
    model is a fixed linear one over a 4x6 thumbnail and hashed words, behind ``transform``/``scores`` too, so
    explanations (which call those) agree with ``predict_one``.
    ``fail=True`` makes every call raise (a model failure); ``calls`` counts predict_one calls; ``seen`` keeps the last 8 inputs.
    The service's warm-up is one predict_one call: ``reset()`` forgets it.
    """

    def __init__(self, modalities: tuple[str, ...] = ("poster", "overview"), model_name: str = "fake",
                 version: str = "0.0-test", fail: bool = False, answer: Any = None) -> None:
        self.genres = list(GENRES)
        self.model_name = model_name
        self.version = version
        self.modalities = set(modalities)
        self.fail = fail
        self.answer = answer  # if set, returned as is (to test bad predictor output)
        self.calls = 0
        self.transforms = 0  # transform calls (explanations)
        self.seen: collections.deque[tuple[Image.Image | None, str | None]] = collections.deque(maxlen=8)  # last inputs
        self.featurizer = types.SimpleNamespace(write_cache=True)  # the service turns the feature cache off

    def reset(self) -> None:
        """Forget the calls so far (the service's warm-up film among them)."""
        self.calls = 0
        self.transforms = 0
        self.seen.clear()

    def _probabilities(self, poster: Image.Image | None, overview: str | None) -> dict[str, float]:
        inputs, _, _ = self._features([poster], [overview])
        return {g: float(p) for g, p in zip(self.genres, self.scores(inputs)[0])}

    def predict_one(self, poster: Image.Image | None = None, overview: str | None = None) -> dict[str, Any]:
        self.calls += 1
        self.seen.append((poster, overview))
        if self.fail:
            raise RuntimeError("fake model failure")
        if self.answer is not None:
            return self.answer
        if poster is not None:
            assert isinstance(poster, Image.Image) and poster.mode == "RGB", f"poster must be an RGB image: {poster}"
        if overview is not None:
            assert isinstance(overview, str) and overview, f"overview must be a non-empty str: {overview!r}"
        assert poster is not None or overview is not None, "at least one input"
        probs = self._probabilities(poster, overview)
        decided = [g for g, p in probs.items() if p >= 0.5] or [max(probs, key=probs.__getitem__)]
        used = [m for m, v in (("poster", poster), ("overview", overview)) if v is not None and m in self.modalities]
        return {"probabilities": probs, "genres": decided, "inputs_used": used, "model": self.model_name,
                "version": self.version}

    def predict_many(self, items: list[tuple[Image.Image | None, str | None]]) -> list[dict[str, Any]]:
        return [self.predict_one(poster, overview) for poster, overview in items]

    def with_decisions(self, threshold=None, top_k=None):
        return self

    def decide(self, probs):
        """predict_one's rule: every genre at 0.5 or over, else the top one."""
        from movie_genres.evaluation.metrics import decide

        return decide(probs, 0.5, True)

    # the model, also what movie_genres.explanation.explain calls: a fixed linear model over poster pixels and words
    thresholds_ = [0.5] * len(GENRES)
    trained = [True] * len(GENRES)
    config: dict[str, Any] = {}
    WORDS = 64  # hashed bag of words

    def transform(self, posters: list, overviews: list) -> tuple[dict[str, Any], Any, dict]:
        self.transforms += 1
        return self._features(posters, overviews)

    def _features(self, posters: list, overviews: list) -> tuple[dict[str, Any], Any, dict]:
        import numpy as np

        n = len(posters)
        pix = np.zeros((n, 3 * 6 * 4), dtype=np.float32)
        words = np.zeros((n, self.WORDS), dtype=np.float32)
        from movie_genres.features.inputs import Problems

        ok = np.zeros(n, dtype=bool)
        problems = Problems.none(n)
        for i, (p, t) in enumerate(zip(posters, overviews)):
            if "poster" in self.modalities:
                if p is not None:
                    pix[i] = np.asarray(p.convert("RGB").resize((4, 6), Image.BILINEAR), dtype=np.float32).ravel() / 255
                    ok[i] = True
                else:
                    problems.add(i, "poster", "poster missing")
            if "overview" in self.modalities:
                if t and t.strip():
                    for w in t.lower().split():
                        words[i, zlib.crc32(w.strip(".,;:!?").encode()) % self.WORDS] += 1.0
                    ok[i] = True
                else:
                    problems.add(i, "overview", "empty overview")
        return {"pixels": pix, "words": words}, ok, problems

    def scores(self, inputs: dict[str, Any]) -> Any:
        import numpy as np

        rng = np.random.default_rng(7)
        wp = rng.normal(0, 0.5, (inputs["pixels"].shape[1], len(self.genres)))
        ww = rng.normal(0, 0.5, (self.WORDS, len(self.genres)))
        z = inputs["pixels"] @ wp + inputs["words"] @ ww - 2.0  # mostly low, a few high, like a real model
        return 1 / (1 + np.exp(-z))


# ----------------------------------------------------------------------------------------------------------------------
# test images


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (60, 90), mode: str = "RGB", seed: int = 0,
                **save: Any) -> bytes:
    """A small poster-like image (a gradient with a seeded colour) encoded as ``fmt``."""
    rng = random.Random(seed)
    base = tuple(rng.randrange(256) for _ in range(3))
    img = Image.new("RGB", size, base)
    for y in range(0, size[1], max(1, size[1] // 8)):
        img.paste(tuple((c + y * 3) % 256 for c in base), (0, y, size[0], min(size[1], y + 4)))
    if mode != "RGB":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt, **save)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that *claims* ``width`` x ``height`` (a decompression bomb's header) with a tiny body."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def multipart_body(*parts: tuple[str, bytes | str, str | None, str | None],
                   boundary: str = "mg-test-boundary-7f3a") -> tuple[bytes, dict[str, str]]:
    """Raw multipart/form-data bytes from ``(name, value, filename or None, content type or None)`` parts.

    Built by hand so that tests control every byte (invalid UTF-8, duplicate fields, text vs file parts).
    """
    b = boundary.encode()
    body = b""
    for name, value, filename, ctype in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        body += b"--" + b + b"\r\nContent-Disposition: " + disposition.encode() + b"\r\n"
        if ctype:
            body += b"Content-Type: " + ctype.encode() + b"\r\n"
        body += b"\r\n" + (value.encode() if isinstance(value, str) else value) + b"\r\n"
    body += b"--" + b + b"--\r\n"
    return body, {"content-type": f"multipart/form-data; boundary={boundary}"}


# ----------------------------------------------------------------------------------------------------------------------
# a real server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(get: Callable[[str], Any], timeout: float = 60.0) -> dict:
    """Poll ``get("/health")`` (a TestClient's or an httpx client's ``get``) until the service is warmed up."""
    deadline = time.monotonic() + timeout
    while True:
        r = get("/health")
        body = r.json()
        if r.status_code == 200 and body["status"] == "ok":
            return body
        if body.get("status") != "loading" or time.monotonic() > deadline:
            raise AssertionError(f"the service did not get ready: {r.status_code} {body}")
        time.sleep(0.01)


@contextlib.contextmanager
def running_server(app: Any, host: str = "127.0.0.1", port: int | None = None,
                   startup_timeout: float = 30.0, ready: bool = True, **uvicorn_options: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread; yields the base URL and stops the server afterwards.

    Works with any ASGI app: ``running_server(create_app(FakePredictor()))`` or, with a trained run folder,
    ``running_server(create_app(Predictor.load(run_dir)))``. With ``ready``, waits until /health says "ok".
    ``uvicorn_options`` go to ``uvicorn.Config`` (``limit_concurrency=4``).
    """
    import httpx
    import uvicorn

    port = port or free_port()
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on", **uvicorn_options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on {host}:{port}")
        time.sleep(0.05)
    url = f"http://{host}:{port}"
    try:
        if ready:
            wait_ready(lambda path: httpx.get(url + path, timeout=startup_timeout), startup_timeout)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def main(argv: list[str] | None = None) -> None:
    import argparse

    import uvicorn

    from movie_genres.service.app import create_app

    parser = argparse.ArgumentParser(description="serve the FakePredictor (HTTP layer only, no model)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    uvicorn.run(create_app(FakePredictor()), host=args.host, port=args.port, log_level="warning",
                limit_concurrency=64)


if __name__ == "__main__":
    main()
