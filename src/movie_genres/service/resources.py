"""What requests share, bounded: decoded poster pixels, the model, and the C heap.

* :class:`Budget`: poster pixels decoded and held at once, all requests together (``max_decoding_pixels``). A
  request takes its whole need (the sum of its posters' header pixel counts) before it decodes a byte and gives it
  back when its answer is made, so decoded images never pile up past the budget while requests queue for the model;
  taking it all at once means no request holds part of the budget while waiting for the rest (no deadlock).
* :class:`ModelLock`: one model call at a time, predictions first. An explanation calls the model many times
  (through :class:`Turns`, a few rows at a time) at low priority, so a /predict waits for at most one such call,
  never for a whole explanation.
* :func:`trim_heap`: ``malloc_trim(0)`` (glibc) after a request that decoded large posters. Pillow allocates a
  poster in 16 MB blocks, below glibc's mmap threshold once that has adapted, so freed posters stay in the heap
  arenas of the threads that decoded them: resident memory climbs to the worst case of every thread and is never
  given back (fragmentation, not a leak: docs/BENCHMARKS.md). ``MOVIE_GENRES_NO_MALLOC_TRIM=1`` turns it off.
"""
from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import threading
from collections import Counter
from typing import Any, AsyncIterator, Iterator

import numpy as np

from movie_genres.features.inputs import Problems

TRIM_FROM_PIXELS = 4_000_000  # a request that decoded this many pixels trims the heap afterwards
TURN_ROWS = 8  # films per model call of an explanation: what a waiting /predict may have to wait for


class Budget:
    """A count shared by requests, bounded (decoded poster pixels in flight; explanations running); used from the
    event loop: ``async with budget.hold(n)`` waits until ``n`` more fit."""

    def __init__(self, limit: int) -> None:
        self.limit = int(limit)
        self.in_use = 0
        self._cond: asyncio.Condition | None = None  # made in the server's event loop, on first use
        self._loop: asyncio.AbstractEventLoop | None = None

    @contextlib.asynccontextmanager
    async def hold(self, pixels: int) -> AsyncIterator[None]:
        need = min(int(pixels), self.limit)  # a request over the whole budget takes all of it
        if need <= 0:
            yield
            return
        loop = asyncio.get_running_loop()
        if self._cond is None or self._loop is not loop:  # one per event loop (a test client starts one each time)
            self._cond, self._loop = asyncio.Condition(), loop
        async with self._cond:
            await self._cond.wait_for(lambda: self.in_use + need <= self.limit)
            self.in_use += need
        try:
            yield
        finally:
            async with self._cond:
                self.in_use -= need
                self._cond.notify_all()


class ModelLock:
    """A lock with two priorities: ``with lock:`` (a prediction) goes before any waiting ``with lock.low():``."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = False
        self._urgent = 0  # predictions waiting

    def acquire(self, urgent: bool = True) -> None:
        with self._cond:
            self._urgent += urgent
            try:
                while self._busy or (not urgent and self._urgent):
                    self._cond.wait()
                self._busy = True
            finally:
                self._urgent -= urgent

    def release(self) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def __enter__(self) -> None:
        self.acquire(True)

    def __exit__(self, *exc: Any) -> None:
        self.release()

    @contextlib.contextmanager
    def low(self) -> Iterator[None]:
        self.acquire(False)
        try:
            yield
        finally:
            self.release()


class Turns:
    """The predictor as a long job (an explanation) sees it: every ``transform`` and ``scores`` call is split into
    ``rows`` films at a time, each taken at low priority on the model lock, so predictions go in between. Rows are
    independent of each other in every featurizer and model, so the answers are the unsplit ones."""

    def __init__(self, predictor: Any, lock: ModelLock, rows: int = TURN_ROWS) -> None:
        self._predictor, self._lock, self._rows = predictor, lock, max(1, int(rows))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._predictor, name)

    def transform(self, posters: list, overviews: list, *args: Any, **kwargs: Any):
        posters, overviews, step = list(posters), list(overviews), self._rows
        chunks = []
        for i in range(0, max(1, len(posters)), step):
            with self._lock.low():
                chunks.append(self._predictor.transform(posters[i:i + step], overviews[i:i + step], *args, **kwargs))
        if len(chunks) == 1:
            return chunks[0]
        inputs = {k: np.concatenate([c[0][k] for c in chunks]) for k in chunks[0][0]}
        if all(isinstance(c[2], Problems) for c in chunks):  # per film, in order
            problems = chunks[0][2]
            for c in chunks[1:]:
                problems = problems + c[2]
        else:  # a predictor that only counts
            problems = Counter()
            for c in chunks:
                problems.update(c[2] or {})
        return inputs, np.concatenate([np.asarray(c[1]) for c in chunks]), problems

    def scores(self, inputs: dict) -> np.ndarray:
        n = len(next(iter(inputs.values())))
        step = self._rows * 4  # scoring is cheap next to encoding: larger turns
        bounds = list(range(0, n, step)) + [n]
        if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
            del bounds[-2]  # no one-film call: the predictor scores a single film by another path (a traced graph)
        out = []
        for lo, hi in zip(bounds[:-1], bounds[1:]) if n else [(0, 0)]:
            with self._lock.low():
                out.append(np.asarray(self._predictor.scores({k: v[lo:hi] for k, v in inputs.items()})))
        return out[0] if len(out) == 1 else np.concatenate(out)


_LIBC: Any = None


def trim_heap() -> bool:
    """Give the C heap's free pages back to the system (glibc ``malloc_trim``); False where there is none."""
    global _LIBC
    if os.environ.get("MOVIE_GENRES_NO_MALLOC_TRIM"):
        return False
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _LIBC = False
    if not _LIBC:
        return False
    _LIBC.malloc_trim(0)
    return True
