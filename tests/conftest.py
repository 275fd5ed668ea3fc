"""Shared fixtures: tiny synthetic datasets in the real format, and the shared data folder for slow tests."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

from movie_genres.data.dataset import GENRES  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "multimodal-imdb"
WORDS = {
    "Action": "explosion chase gun fight",
    "Comedy": "funny laugh joke silly",
    "Drama": "family grief life struggle",
    "Horror": "ghost blood haunted scream",
    "Romance": "love kiss wedding heart",
}
COLOURS = {"Action": (200, 30, 30), "Comedy": (240, 220, 40), "Drama": (40, 40, 160), "Horror": (10, 10, 10), "Romance": (240, 120, 180)}


def write_dataset(root: Path, rows: list[dict], posters: dict[str, bytes | None] | None = None, size=(30, 60)) -> Path:
    """Write a dataset folder. ``rows``: dicts with Id, genres (list) and Overview; optional raw 'Genre' / column overrides.
    ``posters``: Id -> raw bytes (None = no file); films not listed get a synthetic JPEG coloured by their first genre."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    (root / "Images").mkdir(exist_ok=True)
    posters = posters or {}
    with open(root / "IMDB_overview_genres.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Id", "Genre", *GENRES, "Overview"])
        for r in rows:
            genres = r.get("genres", [])
            cols = [r.get("columns", {}).get(g, "1" if g in genres else "0") for g in GENRES]
            w.writerow([r["Id"], r.get("Genre", str(genres)), *cols, r.get("Overview", "")])
    for r in rows:
        fid = r["Id"]
        if fid in posters:
            if posters[fid] is not None:
                (root / "Images" / f"{fid}.jpg").write_bytes(posters[fid])
            continue
        first = (r.get("genres") or ["Drama"])[0]
        colour = np.array(COLOURS.get(first, (120, 120, 120)), dtype=np.int16)
        rng = np.random.default_rng(abs(hash(fid)) % 2**32)
        img = np.clip(colour + rng.integers(-20, 20, size=(size[1], size[0], 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / "Images" / f"{fid}.jpg", "JPEG", quality=90)
    return root


def synthetic_rows(n: int = 60, seed: int = 0) -> list[dict]:
    """Films whose overview words and poster colour both follow their genres, so tiny models can learn them.

    Each seed gives other films with other Ids (``tt1000000`` + 10,000 x seed + i), so a dataset made with another
    seed holds no film a run trained on (``evaluate`` leaves those out)."""
    rng = np.random.default_rng(seed)
    names = list(WORDS)
    rows = []
    for i in range(n):
        k = 1 + int(rng.random() < 0.3)
        genres = [str(g) for g in rng.choice(names, size=k, replace=False)]
        genres = [g for g in GENRES if g in genres]  # IMDb order is irrelevant; keep one-hot order
        words = " ".join(WORDS[g] for g in genres).split()
        rng.shuffle(words)
        rows.append({"Id": f"tt{1000000 + 10_000 * seed + i:07d}", "genres": genres, "Overview": "A story of " + " ".join(words) + "."})
    return rows


@pytest.fixture(autouse=True)
def no_unasked_mpnet(request, monkeypatch):
    """The default text encoder (mpnet) loads only in tests that ask for it (``test_mpnet.py``, or marked ``mpnet``):
    anywhere else it means a test trained the default family by accident, which costs CI minutes."""
    if request.node.path.name == "test_mpnet.py" or request.node.get_closest_marker("mpnet"):
        return
    from movie_genres.features.encoders import mpnet

    def refuse(self):
        raise AssertionError(f"{request.node.nodeid} loaded mpnet without asking: pass text_encoder='minilm' "
                             "(tiny_config has it) or mark the test @pytest.mark.mpnet")

    monkeypatch.setattr(mpnet.MPNetEncoder, "_load", refuse)


@pytest.fixture
def tiny_data(tmp_path) -> Path:
    return write_dataset(tmp_path / "data", synthetic_rows(60))


def data_required() -> bool:
    """In CI (``CI`` set, as CI services do, or ``MOVIE_GENRES_REQUIRE_DATA=1``, as .ci/run sets) a missing shared
    dataset fails the tests that need it; elsewhere they are skipped (and counted as skipped)."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false") or os.environ.get("MOVIE_GENRES_REQUIRE_DATA") == "1"


def shared_or_skip(folder: Path) -> Path:
    if not (folder / "IMDB_overview_genres.csv").exists():
        why = f"shared dataset not found at {folder}"
        if data_required():
            pytest.fail(f"{why}: CI needs it (CI / MOVIE_GENRES_REQUIRE_DATA=1 is set), so this test fails rather than skips")
        pytest.skip(why)
    return folder


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return shared_or_skip(SHARED)


@pytest.fixture(scope="session")
def tiny_config() -> dict:
    """Test-size models: tiny vocabulary and hidden sizes, 2 epochs, no progress bars, the MiniLM text encoder (the
    default, mpnet, is ten times the CPU an overview: tests that need it ask for it, see ``no_unasked_mpnet``)."""
    return dict(epochs=2, batch_size=16, vocab_size=50, sequence_length=12, embedding_dim=8, lstm_units="4", hidden_units=8,
                min_positives=2, verbose=0, patience=5, workers=1, text_encoder="minilm")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory, tiny_config, cache_dir) -> dict[str, Path]:
    """One tiny trained run per original model on a synthetic dataset (shared by several test files)."""
    from movie_genres import train

    base = tmp_path_factory.mktemp("runs")
    data = write_dataset(base / "data", synthetic_rows(80, seed=1))
    runs = {m: train(m, data, base / m, cache_dir=cache_dir, **tiny_config) for m in ("cnn", "bilstm")}
    runs["data"] = data
    return runs
