"""Train several models at once: worker processes, each with its share of the cores, in dependency order.

Most of `train --model all` cannot use two cores well: the BiLSTM's time-step loop gains ~5% from a second thread,
the heads on pretrained features train fastest on one, and the CNN gains ~1.4x. Two workers with one thread each
keep both cores busy instead (measured in docs/BENCHMARKS.md).

Each model is still one ``train()`` call, so its run folder, the run cache and the results are the same as a
separate ``movie-genres train --model NAME threads=N`` would give. A worker's console output goes to
``<job>/logs/<model>.log`` (one line per epoch, no progress bars); the job logs one line when a model starts and
ends, and every minute what the running ones are doing.
"""
from __future__ import annotations

import concurrent.futures as futures
import logging
import multiprocessing
import os
import re
import sys
import threading
import time
from pathlib import Path

from movie_genres.io import available_cores
from movie_genres.models import registry

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 60.0


class TrainingFailed(RuntimeError):
    """Some models of a job failed; the others finished, their runs are written and kept in the run cache."""

    def __init__(self, failed: dict, root: Path):
        self.failed, self.root = failed, root
        lines = "; ".join(f"{name}: {why}" for name, why in failed.items())
        super().__init__(f"{len(failed)} model(s) failed ({lines}). The others finished in {root}; "
                         "running the same command again copies them from the run cache and retries the rest")


def default_jobs(cores: int | None = None) -> int:
    """Two workers wherever there are two cores: the measured best on two cores (docs/BENCHMARKS.md).

    Example:
        >>> default_jobs(1), default_jobs(2), default_jobs(16)
        (1, 2, 2)
    """
    return 2 if (cores or available_cores()) >= 2 else 1


def schedule(names: list[str]) -> list[str]:
    """``names`` in the order they may start: by the registry's ``start_rank`` (long models, and those others wait
    for, first), unknown names last, in their given order.

    Example:
        >>> schedule(["late", "bilstm", "text", "cnn"])
        ['cnn', 'text', 'bilstm', 'late']
    """
    last = len(registry.SPECS)
    return sorted(names, key=lambda n: (registry.SPEC[n].start_rank if n in registry.SPEC else last, names.index(n)))


def needs(name: str, names: list[str]) -> list[str]:
    """The models ``name`` waits for among those trained in the same job (``registry.needs``: the fusions read the
    features the text and poster heads cache; late / ensemble are composed of runs found in the run cache rather
    than trained twice)."""
    return [d for d in (registry.needs(name) if name in registry.SPEC else ()) if d in names]


def _init_worker(threads: int, level: int, parent: int | None = None) -> None:
    os.environ["MOVIE_GENRES_THREADS"] = str(threads)  # encoders (onnxruntime / torch) in this worker
    # A worker's output is its log file: no progress bars there (training prints one line per epoch instead), also
    # not the libraries' own (tqdm defaults, Hugging Face loaders).
    os.environ["TQDM_DISABLE"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    logging.basicConfig(level=level, format="%(levelname)s %(message)s", force=True)
    if parent is not None:
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int, every: float = 1.0) -> None:
    """Stop this worker once the job that started it is gone (killed, not just interrupted): an orphan would go on
    training into a run folder nobody waits for. Its last checkpoint stays, so ``train --resume`` continues it."""
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)


def _train_in_worker(name: str, kwargs: dict, log_path: str) -> tuple[str, float]:
    """Run ``train(name, **kwargs)`` with this process's output going to ``log_path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)  # file descriptors, so progress bars and native libraries' output land there too
    os.dup2(fd, 2)
    os.close(fd)
    t0 = time.perf_counter()
    try:
        from movie_genres.training.train import train

        return str(train(name, **kwargs)), time.perf_counter() - t0
    except BaseException:
        logging.getLogger("movie_genres").exception("%s failed", name)
        raise
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def last_line(path: Path, width: int = 100) -> str:
    """What a log says last: its last non-empty line (progress-bar redraws, ``\\r``, count as lines) without colour
    codes, after the epoch it is in when that line does not say.

    Example:
        >>> import tempfile; p = Path(tempfile.mkdtemp()) / "x.log"; _ = p.write_text("a\\nEpoch 2/9\\n\\x1b[1m3/91\\x1b[0m\\r 5/91\\n")
        >>> last_line(p)
        'Epoch 2/9 5/91'
    """
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 65536))  # one epoch of Keras progress-bar redraws
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [s.strip() for s in re.sub(r"\x1b\[[0-9;]*m", "", tail).replace("\r", "\n").split("\n") if s.strip()]
    if not lines:
        return ""
    epochs = [s for s in lines if re.fullmatch(r"Epoch \d+/\d+", s)]
    last = lines[-1] if not epochs or lines[-1] == epochs[-1] else f"{epochs[-1]} {lines[-1]}"
    return last[:width]


def train_parallel(names: list[str], kwargs: dict, log_dir: Path, jobs: int, threads: int) -> tuple[dict, dict]:
    """Train ``names`` in ``jobs`` worker processes of ``threads`` threads each; a model starts once the models it
    :func:`needs` have finished. ``kwargs[name]`` are the keyword arguments of its ``train`` call.

    Returns ``(done, failed)``: ``{name: (run_dir, seconds)}`` and ``{name: reason}``. A failed model does not stop
    the others; the models that need it are not started.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    pending, running, done, failed = schedule(list(names)), {}, {}, {}
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch / tokenizer thread pools
    level = logging.getLogger("movie_genres").getEffectiveLevel()
    with futures.ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker, initargs=(threads, level, os.getpid())) as pool:
        try:
            while pending or running:
                for name in list(pending):
                    if len(running) >= jobs:
                        break
                    waits = needs(name, names)
                    lost = [d for d in waits if d in failed]
                    if lost:
                        pending.remove(name)
                        failed[name] = f"not started: {', '.join(lost)} failed"
                        log.error("=== %s %s", name, failed[name])
                    elif all(d in done for d in waits):
                        pending.remove(name)
                        log_path = log_dir / f"{name}.log"
                        try:
                            running[pool.submit(_train_in_worker, name, kwargs[name], str(log_path))] = (name, log_path)
                        except futures.process.BrokenProcessPool:
                            failed[name] = "not started: a worker process died (out of memory?)"
                            log.error("=== %s %s", name, failed[name])
                            continue
                        log.info("=== %s: started (output in %s)", name, log_path)
                if not running:
                    break
                finished, _ = futures.wait(running, timeout=HEARTBEAT_SECONDS, return_when=futures.FIRST_COMPLETED)
                if not finished:
                    log.info("=== running: %s", "; ".join(f"{n}: {last_line(p)}" for n, p in running.values()))
                for fut in finished:
                    name, log_path = running.pop(fut)
                    try:
                        run_dir, seconds = fut.result()
                    except Exception as exc:  # reported, and the independent models go on
                        failed[name] = f"{type(exc).__name__}: {exc} (see {log_path})"
                        log.error("=== %s failed: %s", name, failed[name])
                    else:
                        done[name] = (Path(run_dir), seconds)
                        log.info("=== %s: done in %.0fs (%d of %d)", name, seconds, len(done), len(names))
        except BaseException:
            for fut in running:
                fut.cancel()
            raise
    for name in pending:  # defensive: every model is accounted for
        failed[name] = "not started"
    return done, failed
