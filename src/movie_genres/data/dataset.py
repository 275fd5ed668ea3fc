"""Load a Multimodal-IMDB style folder: ``IMDB_overview_genres.csv`` + ``Images/<Id>.jpg``.

Problems with the whole file (missing folder, missing columns) raise :class:`DataError` with a message that says what
is expected. Problems with single rows (bad labels, missing fields, duplicate Ids, non-UTF-8 text, empty overviews, missing posters)
are counted in ``Dataset.skipped`` and the row is dropped, or only its broken modality is, so training never crashes
mid-epoch on one bad film. Poster *content* (unreadable, truncated, greyscale, CMYK, not JPEG) is checked when posters
are decoded (features/posters.py), which adds its own counts.
"""
from __future__ import annotations

import ast
import io
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

CSV_NAME = "IMDB_overview_genres.csv"
IMAGES_DIR = "Images"
GENRES = (
    "Action Adventure Animation Biography Comedy Crime Documentary Drama Family Fantasy History Horror Music Musical "
    "Mystery N/A News Reality-TV Romance Sci-Fi Short Sport Thriller War Western"
).split()
FORMAT_HELP = (
    f"a folder holding {CSV_NAME} (UTF-8 CSV with header Id,Genre,<25 genre columns of 0/1>,Overview) and an "
    f"{IMAGES_DIR}/ folder with one <Id>.jpg poster per film"
)


class DataError(ValueError):
    """The dataset folder or its CSV cannot be used at all."""


DEFAULT_DATA = Path("..") / "shared" / "data" / "multimodal-imdb"  # relative to the working directory


def default_data_dir() -> Path:
    """The folder read when no data folder is given: ``../shared/data/multimodal-imdb`` relative to the working
    directory (the development copy next to a checkout run from its root), absolute; it may not exist."""
    return (Path.cwd() / DEFAULT_DATA).resolve()


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """Return ``data_dir`` or the default folder; raise :class:`DataError` saying what is expected."""
    if data_dir is None:
        found = default_data_dir()
        if not (found / CSV_NAME).is_file():
            raise DataError(f"no --data folder given and the default {DEFAULT_DATA.as_posix()} (relative to the working "
                            f"directory: {found}) has no {CSV_NAME}; pass --data DIR (data= in Python): expected {FORMAT_HELP}")
        return found
    path = Path(data_dir)
    if not path.is_dir():
        raise DataError(f"data folder {path} does not exist; expected {FORMAT_HELP}")
    if not (path / CSV_NAME).is_file():
        raise DataError(f"{path} has no {CSV_NAME}; expected {FORMAT_HELP}")
    return path


def announce_data(path: str | Path, what: str) -> None:
    """Log the ``data: <absolute path> (<what>)`` line that says which data a command reads."""
    log.info("data: %s (%s)", Path(path).expanduser().resolve(), what)


@dataclass
class Dataset:
    """Usable films of one folder. Arrays are aligned by row; ``labels`` follows ``genres`` (schema order)."""

    root: Path
    ids: list[str]
    overviews: list[str]  # "" where the overview is unusable (the film may still have a poster)
    poster_paths: list[Path | None]  # None where the poster file is missing
    labels: np.ndarray  # (n, len(genres)) float32 0/1
    genres: list[str]
    skipped: Counter = field(default_factory=Counter)  # reason -> rows dropped entirely
    notes: Counter = field(default_factory=Counter)  # reason -> rows kept with one modality missing or converted
    problems: list[str] = field(default_factory=list)  # first few human-readable messages

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_skipped(self) -> int:
        return int(sum(self.skipped.values()))

    def has_overview(self) -> np.ndarray:
        return np.array([bool(t) for t in self.overviews])

    def has_poster(self) -> np.ndarray:
        return np.array([p is not None for p in self.poster_paths])

    def subset(self, index) -> "Dataset":
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return Dataset(
            root=self.root,
            ids=[self.ids[i] for i in index],
            overviews=[self.overviews[i] for i in index],
            poster_paths=[self.poster_paths[i] for i in index],
            labels=self.labels[index],
            genres=list(self.genres),
            skipped=Counter(self.skipped),
            notes=Counter(self.notes),
            problems=list(self.problems),
        )

    def drop(self, keep: np.ndarray, reason_per_row: list[str | None]) -> "Dataset":
        """Keep rows where ``keep``; count the others under their reason in ``skipped``."""
        out = self.subset(keep)
        for ok, reason in zip(keep, reason_per_row):
            if not ok:
                out.skipped[reason or "unusable"] += 1
        return out

    def summary(self) -> str:
        parts = [f"{len(self)} usable films"]
        if self.skipped:
            parts.append("skipped: " + ", ".join(f"{v} {k}" for k, v in sorted(self.skipped.items())))
        if self.notes:
            parts.append("notes: " + ", ".join(f"{v} {k}" for k, v in sorted(self.notes.items())))
        return "; ".join(parts)


def _read_csv(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    raw = path.read_bytes()
    # Decode line by line so one bad row is counted, not fatal: rows with invalid UTF-8 get U+FFFD and are flagged.
    text = raw.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path} is not a readable CSV ({exc}); expected {FORMAT_HELP}") from None
    bad_utf8 = np.zeros(len(df), dtype=bool)
    if "\ufffd" in text:
        bad_utf8 = df.apply(lambda row: any("\ufffd" in str(v) for v in row.values), axis=1).to_numpy(dtype=bool)
    return df, bad_utf8


def load_dataset(data_dir: str | Path | None = None, require: tuple[str, ...] = ()) -> Dataset:
    """Read and validate a dataset folder.

    Args:
        data_dir: folder with ``IMDB_overview_genres.csv`` and ``Images/``; None = :func:`default_data_dir`.
        require: modalities a film must have to be kept ("poster", "overview"); films missing one are counted as skipped.
            With ``require=()`` a film is kept if it has at least one modality.

    Example:
        >>> ds = load_dataset("../shared/data/multimodal-imdb", require=("poster",))  # doctest: +SKIP
        >>> ds.summary()  # doctest: +SKIP
        '5060 usable films'
    """
    root = resolve_data_dir(data_dir)
    df, bad_utf8 = _read_csv(root / CSV_NAME)
    missing = [c for c in ["Id", "Genre", *GENRES, "Overview"] if c not in df.columns]
    if missing:
        raise DataError(f"{root / CSV_NAME} is missing column(s) {', '.join(missing)}; expected {FORMAT_HELP}")
    if len(df) == 0:
        raise DataError(f"{root / CSV_NAME} has a header but no films")

    n = len(df)
    reason: list[str | None] = [None] * n
    problems: list[str] = []

    def flag(i: int, why: str, detail: str) -> None:
        if reason[i] is None:
            reason[i] = why
            if len(problems) < 50:
                problems.append(f"row {i + 2} ({df['Id'].iat[i] or '?'}): {detail}")

    ids = df["Id"].str.strip()
    onehot = df[GENRES].apply(lambda c: c.str.strip())
    valid01 = onehot.isin(["0", "1"])
    labels = np.where(valid01.to_numpy(), onehot.to_numpy() == "1", False).astype(np.float32)
    fields = ["Genre", *GENRES, "Overview"]
    empty = (df[fields].apply(lambda c: c.str.strip()) == "").to_numpy()
    seen: set[str] = set()
    for i in range(n):
        if bad_utf8[i]:
            flag(i, "non-UTF-8 text", "text is not valid UTF-8")
        if not ids.iat[i]:
            flag(i, "missing Id", "empty Id")
        elif ids.iat[i] in seen:
            flag(i, "duplicate Id", f"Id {ids.iat[i]} appears more than once (first kept)")
        seen.add(ids.iat[i])
        if empty[i, :-1].any():  # a short row (fewer fields than the header) reads as empty trailing fields
            where = [f for f, e in zip(fields, empty[i]) if e]
            flag(i, "missing fields", f"no value for {', '.join(where)} (empty, or the row has fewer fields than the header)")
            continue
        if not valid01.iloc[i].all():
            bad = [g for g in GENRES if not valid01.iloc[i][g]]
            flag(i, "genre value not 0/1", f"genre column(s) {', '.join(bad)} not 0 or 1")
            continue
        if labels[i].sum() == 0:
            flag(i, "no genre", "no genre column is 1")
            continue
        try:
            listed = ast.literal_eval(df["Genre"].iat[i])
            if isinstance(listed, str):
                listed = [listed]
            listed = {str(g).strip() for g in listed}
        except (ValueError, SyntaxError):
            flag(i, "Genre unreadable", f"Genre {df['Genre'].iat[i]!r} is not a list literal")
            continue
        onehot_set = {g for g, v in zip(GENRES, labels[i]) if v}
        if listed != onehot_set:
            flag(i, "Genre disagrees with one-hot columns", f"Genre lists {sorted(listed)} but columns say {sorted(onehot_set)}")

    overviews = [str(t).strip() for t in df["Overview"]]
    poster_paths: list[Path | None] = []
    notes: Counter = Counter()
    for i in range(n):
        p = root / IMAGES_DIR / f"{ids.iat[i]}.jpg"
        ok = bool(ids.iat[i]) and p.is_file()
        poster_paths.append(p if ok else None)
        if reason[i] is None:
            if not ok:
                notes["poster missing"] += 1
                if "poster" in require:
                    flag(i, "poster missing", f"no poster at {p}")
            if not overviews[i]:
                notes["empty overview"] += 1
                if "overview" in require:
                    flag(i, "empty overview", "Overview is empty")
            if not ok and not overviews[i]:
                flag(i, "no poster and no overview", "neither a poster nor an overview")

    keep = np.array([r is None for r in reason])
    skipped = Counter(r for r in reason if r is not None)
    ds = Dataset(
        root=root,
        ids=[ids.iat[i] for i in np.flatnonzero(keep)],
        overviews=[overviews[i] for i in np.flatnonzero(keep)],
        poster_paths=[poster_paths[i] for i in np.flatnonzero(keep)],
        labels=labels[keep],
        genres=list(GENRES),
        skipped=skipped,
        notes=notes,
        problems=problems,
    )
    for msg in problems[:10]:
        log.warning("%s", msg)
    if len(ds) == 0:
        raise DataError(f"no usable film in {root / CSV_NAME}: {dict(skipped)}")
    announce_data(root, ds.summary())
    return ds
