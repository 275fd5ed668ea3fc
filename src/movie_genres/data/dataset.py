"""Load films and their labels: a Multimodal-IMDB style folder (``IMDB_overview_genres.csv`` + ``Images/<Id>.jpg``)
or a CSV / Parquet manifest (``Id``, ``poster``, ``overview`` and a label column).

The label set is data, not code: a folder's labels are the 0/1 columns between ``Id`` (and the optional ``Genre``) and
``Overview``; a manifest's are the names its label lists use. :data:`GENRES` documents the shared IMDb folder's 25.

Problems with the whole file (missing folder, missing columns) raise :class:`DataError` with a message that says what
is expected. Problems with single rows (bad labels, missing fields, duplicate Ids, non-UTF-8 text, empty overviews, missing posters)
are counted in ``Dataset.skipped`` and the row is dropped, or only its broken modality is, so training never crashes
mid-epoch on one bad film. Poster *content* (unreadable, truncated, greyscale, CMYK, not JPEG) is checked when posters
are decoded (features/posters.py), which adds its own counts.
"""
from __future__ import annotations

import ast
import io
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

CSV_NAME = "IMDB_overview_genres.csv"
IMAGES_DIR = "Images"
GENRES = (  # the shared IMDb folder's label columns (documentation and test data; the reader takes any)
    "Action Adventure Animation Biography Comedy Crime Documentary Drama Family Fantasy History Horror Music Musical "
    "Mystery N/A News Reality-TV Romance Sci-Fi Short Sport Thriller War Western"
).split()
FORMAT_HELP = (
    f"a folder holding {CSV_NAME} (UTF-8 CSV with header Id,[Genre,]<label columns of 0/1>,Overview) and an "
    f"{IMAGES_DIR}/ folder with one <Id>.jpg poster per film, or a CSV / Parquet manifest with columns Id, poster, "
    "overview and genres (a list of labels; in a CSV 'Action|Science Fiction')"
)
MANIFEST_SUFFIXES = (".csv", ".parquet")
LABEL_COLUMN = "genres"  # a manifest's label column unless told otherwise (config label_column, --labels)
MAX_LABEL_CHARS = 100


def check_label_names(names, where: str) -> list[str]:
    """Label names trimmed and checked: non-empty UTF-8 text of at most 100 characters, no control characters, no two
    the same once trimmed and case-folded. Raises :class:`DataError` naming the offending value.

    Example:
        >>> check_label_names([" Science Fiction ", "Comédie"], "labels")
        ['Science Fiction', 'Comédie']
    """
    import unicodedata

    out: list[str] = []
    seen: dict[str, str] = {}
    for raw in names:
        if not isinstance(raw, str):
            raise DataError(f"{where}: label {raw!r} is not text")
        name = raw.strip()
        if not name:
            raise DataError(f"{where}: a label name is empty")
        if len(name) > MAX_LABEL_CHARS:
            raise DataError(f"{where}: label name {name[:40]!r}... is {len(name)} characters (at most {MAX_LABEL_CHARS})")
        if any(unicodedata.category(c) == "Cc" for c in name):
            raise DataError(f"{where}: label name {name!r} holds a control character")
        key = name.casefold()
        if key in seen:
            raise DataError(f"{where}: labels {seen[key]!r} and {name!r} are the same label (names are compared trimmed "
                            "and case-folded)")
        seen[key] = name
        out.append(name)
    return out


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
    if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        return path
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


def is_file_name(fid: str) -> bool:
    """Whether an Id can name its poster ``Images/<Id>.jpg``: no path separator, no NUL, not ``.``/``..`` (an Id
    such as ``../../etc/x`` would read a file outside the images folder)."""
    return bool(fid) and not any(c in fid for c in "/\\\0") and fid not in (".", "..")


def load_dataset(data_dir: str | Path | None = None, require: tuple[str, ...] = (), label_column: str = LABEL_COLUMN) -> Dataset:
    """Read and validate a dataset folder or a CSV / Parquet manifest.

    Args:
        data_dir: folder with ``IMDB_overview_genres.csv`` and ``Images/``, or a ``.csv`` / ``.parquet`` manifest;
            None = :func:`default_data_dir`.
        require: modalities a film must have to be kept ("poster", "overview"); films missing one are counted as skipped.
            With ``require=()`` a film is kept if it has at least one modality.
        label_column: a manifest's column of label lists (Parquet ``list<string>``; in a CSV ``A|B``, or a JSON /
            Python list literal). A film without labels is a counted skip.

    Example:
        >>> ds = load_dataset("../shared/data/multimodal-imdb", require=("poster",))  # doctest: +SKIP
        >>> ds.summary()  # doctest: +SKIP
        '5060 usable films'
    """
    root = resolve_data_dir(data_dir)
    if root.is_file():
        return _load_manifest(root, require, label_column)
    df, bad_utf8 = _read_csv(root / CSV_NAME)
    missing = [c for c in ["Id", "Overview"] if c not in df.columns]
    if missing:
        raise DataError(f"{root / CSV_NAME} is missing column(s) {', '.join(missing)}; expected {FORMAT_HELP}")
    columns = list(df.columns)
    has_genre = "Genre" in columns
    first = columns.index("Genre") + 1 if has_genre else columns.index("Id") + 1
    label_cols = columns[first : columns.index("Overview")]
    if not label_cols:
        raise DataError(f"{root / CSV_NAME} has no label columns between {'Genre' if has_genre else 'Id'} and Overview; "
                        f"expected {FORMAT_HELP}")
    genres = check_label_names(label_cols, f"{root / CSV_NAME} header")
    if len(df) == 0:
        raise DataError(f"{root / CSV_NAME} has a header but no films")

    rows = _Rows(df["Id"].str.strip().tolist(), df["Id"].tolist())
    onehot = df[label_cols].apply(lambda c: c.str.strip())
    valid01 = onehot.isin(["0", "1"])
    labels = np.where(valid01.to_numpy(), onehot.to_numpy() == "1", False).astype(np.float32)
    fields = (["Genre"] if has_genre else []) + label_cols + ["Overview"]
    empty = (df[fields].apply(lambda c: c.str.strip()) == "").to_numpy()
    for i in range(len(df)):
        if bad_utf8[i]:
            rows.flag(i, "non-UTF-8 text", "text is not valid UTF-8")
        rows.check_id(i, file_name=True)
        if empty[i, :-1].any():  # a short row (fewer fields than the header) reads as empty trailing fields
            where = [f for f, e in zip(fields, empty[i]) if e]
            rows.flag(i, "missing fields", f"no value for {', '.join(where)} (empty, or the row has fewer fields than the header)")
            continue
        if not valid01.iloc[i].all():
            bad = [g for g, c in zip(genres, label_cols) if not valid01.iloc[i][c]]
            rows.flag(i, "genre value not 0/1", f"genre column(s) {', '.join(bad)} not 0 or 1")
            continue
        if labels[i].sum() == 0:
            rows.flag(i, "no genre", "no genre column is 1")
            continue
        if not has_genre:
            continue
        try:
            listed = ast.literal_eval(df["Genre"].iat[i])
            if isinstance(listed, str):
                listed = [listed]
            listed = {str(g).strip() for g in listed}
        except (ValueError, SyntaxError):
            rows.flag(i, "Genre unreadable", f"Genre {df['Genre'].iat[i]!r} is not a list literal")
            continue
        onehot_set = {g for g, v in zip(genres, labels[i]) if v}
        if listed != onehot_set:
            rows.flag(i, "Genre disagrees with one-hot columns", f"Genre lists {sorted(listed)} but columns say {sorted(onehot_set)}")
    overviews = [str(t).strip() for t in df["Overview"]]
    posters = [root / IMAGES_DIR / f"{fid}.jpg" if is_file_name(fid) else None for fid in rows.ids]
    return rows.dataset(root, overviews, posters, labels, genres, require)


class _Rows:
    """The rows of one source as they are checked: the first reason each row is dropped, the first messages."""

    def __init__(self, ids: list[str], raw_ids: list):
        self.ids, self.raw_ids = ids, raw_ids
        self.reason: list[str | None] = [None] * len(ids)
        self.problems: list[str] = []
        self._seen: set[str] = set()

    def flag(self, i: int, why: str, detail: str) -> None:
        if self.reason[i] is None:
            self.reason[i] = why
            if len(self.problems) < 50:
                self.problems.append(f"row {i + 2} ({self.raw_ids[i] or '?'}): {detail}")

    def check_id(self, i: int, file_name: bool = False) -> None:
        """Flag a missing or repeated Id (and, ``file_name``, one that cannot name a poster file)."""
        fid = self.ids[i]
        if not fid:
            self.flag(i, "missing Id", "empty Id")
        elif file_name and not is_file_name(fid):
            self.flag(i, "Id not a file name", f"Id {fid[:80]!r} has a path separator or is '..' (its poster would "
                                               f"be read from outside {IMAGES_DIR}/)")
        elif fid in self._seen:
            self.flag(i, "duplicate Id", f"Id {fid} appears more than once (first kept)")
        self._seen.add(fid)

    def dataset(self, root: Path, overviews: list[str], posters: list[Path | None], labels: np.ndarray, genres: list[str],
                require: tuple[str, ...]) -> Dataset:
        """The kept rows as a :class:`Dataset` (a poster that is not a file counts as missing)."""
        n = len(self.ids)
        poster_paths: list[Path | None] = []
        notes: Counter = Counter()
        for i in range(n):
            p = posters[i]
            ok = p is not None and p.is_file()
            poster_paths.append(p if ok else None)
            if self.reason[i] is None:
                if not ok:
                    notes["poster missing"] += 1
                    if "poster" in require:
                        self.flag(i, "poster missing", f"no poster at {p}")
                if not overviews[i]:
                    notes["empty overview"] += 1
                    if "overview" in require:
                        self.flag(i, "empty overview", "Overview is empty")
                if not ok and not overviews[i]:
                    self.flag(i, "no poster and no overview", "neither a poster nor an overview")
        keep = np.flatnonzero([r is None for r in self.reason])
        ds = Dataset(
            root=root,
            ids=[self.ids[i] for i in keep],
            overviews=[overviews[i] for i in keep],
            poster_paths=[poster_paths[i] for i in keep],
            labels=labels[keep],
            genres=list(genres),
            skipped=Counter(r for r in self.reason if r is not None),
            notes=notes,
            problems=self.problems,
        )
        for msg in self.problems[:10]:
            log.warning("%s", msg)
        if len(ds) == 0:
            raise DataError(f"no usable film in {root if root.is_file() else root / CSV_NAME}: {dict(ds.skipped)}")
        announce_data(root, ds.summary())
        return ds


def parse_labels(value) -> list[str]:
    """One film's labels from a manifest cell: a list (Parquet ``list<string>``), ``"A|B"``, or a JSON / Python list
    literal (``'["A", "B"]'``); names trimmed, empty ones dropped. Raises ``ValueError`` for anything else.

    Example:
        >>> parse_labels("Action|Science Fiction"), parse_labels('["Drame", "Comédie"]'), parse_labels("")
        (['Action', 'Science Fiction'], ['Drame', 'Comédie'], [])
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, (list, tuple, np.ndarray)):
        items = list(value)
    else:
        text = str(value).strip()
        if not text:
            return []
        if text.startswith("["):
            try:
                items = json.loads(text)
            except ValueError:
                try:
                    items = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    raise ValueError(f"{text[:60]!r} is not a list") from None
            if not isinstance(items, (list, tuple)):
                raise ValueError(f"{text[:60]!r} is not a list")
        else:
            items = text.split("|")
    if any(not isinstance(x, str) for x in items if x is not None):
        raise ValueError(f"labels {items!r} are not all text")
    return [x.strip() for x in items if x is not None and x.strip()]


def _manifest_frame(path: Path, label_column: str) -> tuple[pd.DataFrame, np.ndarray]:
    """A manifest as text columns (labels kept as read), its column types checked; and the non-UTF-8 rows of a CSV."""
    if path.suffix.lower() == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{path} is not a readable Parquet file ({exc})") from None
        for name in table.column_names:
            t = table.schema.field(name).type
            if name == label_column:
                ok = pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t) or (
                    (pa.types.is_list(t) or pa.types.is_large_list(t)) and (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)))
                want = "a list of strings (or 'A|B' text)"
            elif name in ("poster", "overview"):
                ok, want = pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t), "text"
            elif name == "Id":
                ok, want = pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t), "text"
            else:
                continue
            if not ok:
                raise DataError(f"{path}: column {name!r} is {t}, expected {want}")
        df = table.to_pandas()
        for name in ("Id", "poster", "overview"):
            if name in df.columns:
                df[name] = df[name].map(lambda v: "" if v is None else str(v))
        return df, np.zeros(len(df), dtype=bool)
    return _read_csv(path)


def _load_manifest(path: Path, require: tuple[str, ...], label_column: str) -> Dataset:
    df, bad_utf8 = _manifest_frame(path, label_column)
    missing = [c for c in ("Id", label_column) if c not in df.columns]
    if not {"poster", "overview"} & set(df.columns):
        missing.append("poster or overview")
    if missing:
        hint = "; name another label column with --labels (config label_column)" if label_column in missing else ""
        raise DataError(f"{path} is missing column(s) {', '.join(missing)}{hint}; expected {FORMAT_HELP}")
    if len(df) == 0:
        raise DataError(f"{path} has a header but no films")
    n = len(df)
    rows = _Rows([str(v).strip() for v in df["Id"]], df["Id"].tolist())
    lists: list[list[str]] = [[] for _ in range(n)]
    for i, cell in enumerate(df[label_column]):
        if bad_utf8[i]:
            rows.flag(i, "non-UTF-8 text", "text is not valid UTF-8")
        rows.check_id(i)
        try:
            lists[i] = parse_labels(cell)
        except ValueError as exc:
            rows.flag(i, "labels unreadable", f"{label_column}: {exc}")
            continue
        if not lists[i]:
            rows.flag(i, "no labels", f"no label in {label_column}")
    names = sorted({x for i, row in enumerate(lists) if rows.reason[i] is None for x in row}, key=lambda x: (x.casefold(), x))
    genres = check_label_names(names, f"{path} column {label_column!r}")
    index = {g: j for j, g in enumerate(genres)}
    labels = np.zeros((n, len(genres)), dtype=np.float32)
    for i, row in enumerate(lists):
        if rows.reason[i] is None:
            labels[i, [index[x] for x in row]] = 1.0
    overviews = [str(t).strip() for t in df["overview"]] if "overview" in df.columns else [""] * n
    posters = [_manifest_poster(path, v) for v in df["poster"]] if "poster" in df.columns else [None] * n
    return rows.dataset(path, overviews, posters, labels, genres, require)


def _manifest_poster(manifest: Path, value) -> Path | None:
    """A manifest's poster as a local path: relative to the manifest's folder, absolute, or ``file://``."""
    text = "" if value is None else str(value).strip()
    if not text:
        return None
    if "://" in text:
        from urllib.parse import unquote, urlparse

        url = urlparse(text)
        if url.scheme != "file":
            raise DataError(f"{manifest}: poster {text!r} is a {url.scheme}:// URI; train and evaluate read local poster "
                            "files (relative to the manifest, absolute, or file://); predict and encode also read URIs")
        return Path(unquote(url.path))
    path = Path(text)
    return path if path.is_absolute() else manifest.parent / path
