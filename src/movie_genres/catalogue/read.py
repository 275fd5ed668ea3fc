"""Catalogue sources: the films to tag, read as a stream of validated rows in numbered parts.

Three kinds of source:

- ``--data DIR`` in the dataset's format, genre columns optional: ``IMDB_overview_genres.csv`` with at least ``Id``
  (and ``Overview`` where there are overviews), posters at ``Images/<Id>.jpg``;
- a folder of posters with no CSV (``DIR/Images/*`` or ``DIR/*``: .jpg, .jpeg, .png, .webp): Ids from the file
  names, posters only;
- ``--manifest FILE.csv|FILE.parquet`` with columns ``Id``, ``poster`` (a path relative to the manifest, absolute,
  or a URI that ``pyarrow.fs`` opens, such as ``s3://bucket/key.jpg``) and ``overview``; either of the last two may
  be missing, or empty in any row.

Rows are read in batches (pyarrow's streaming CSV reader, Parquet record batches), never the whole table at once, and
grouped into *parts* of ``part_rows`` input rows: the unit that is predicted, written and resumed. A row with no Id,
a duplicate Id (the first row is kept), a malformed CSV row and (``--data``) an Id that is not a file name (``../x``)
are counted in :attr:`Catalogue.dropped` and are in no part; every other row is in exactly one part, with its known
problems (an overview that is not UTF-8) in ``note``. Posters are read from regular files only, at most
``MAX_POSTER_BYTES``; a manifest's columns must hold text (Parquet types are checked when it is opened).
The Ids seen are kept in memory (about 100 bytes each) to find duplicates.
"""
from __future__ import annotations

import csv
import hashlib
import os
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import pyarrow as pa

from movie_genres.catalogue.errors import CatalogueError
from movie_genres.data.dataset import CSV_NAME, IMAGES_DIR, announce_data, is_file_name
from movie_genres.features.posters import PosterError

POSTER_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
MAX_POSTER_BYTES = 50 * 2**20  # larger files are not posters; refused before they are read
READ_ROWS = 8192  # rows per batch read from a manifest
BAD_ID = f"Id not a file name (a path separator or '..': its poster would be outside {IMAGES_DIR}/)"

# One part of a catalogue, as the batch predictor reads it.
INPUT_SCHEMA = pa.schema(
    [("_row", pa.int64()), ("Id", pa.string()), ("poster", pa.string()), ("overview", pa.string()), ("note", pa.string())]
)
FORMAT_HELP = (
    f"--data DIR (a dataset folder with {CSV_NAME} holding at least an Id column, and {IMAGES_DIR}/<Id>.jpg posters; "
    "or a folder of poster images), or --manifest FILE.csv|FILE.parquet with columns Id, poster, overview "
    "(poster: a path relative to the manifest, absolute, or a URI; either poster or overview may be missing)"
)


KINDS = {"dataset": "dataset folder", "posters": "folder of posters", "manifest": "manifest"}


@dataclass
class Part:
    """Input rows ``[index * part_rows, (index + 1) * part_rows)`` less the dropped ones (``rows``: INPUT_SCHEMA)."""

    index: int
    rows: pa.Table
    input_rows: int  # rows of the source in this part, dropped ones included


@dataclass
class Catalogue:
    """A catalogue source, opened and checked; :meth:`parts` streams it."""

    kind: str  # "dataset" | "posters" | "manifest"
    path: Path  # the folder or the manifest file
    table: Path | None = None  # the CSV or Parquet file read (None for a posters folder)
    columns: dict = field(default_factory=dict)  # role ("Id", "poster", "overview") -> column name in the table
    dropped: Counter = field(default_factory=Counter)  # filled as parts() runs; complete once it has

    # -- identity of the input: an output is only continued for the same one
    def fingerprint(self) -> dict:
        h = hashlib.sha256()
        if self.table is not None:
            with open(self.table, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        else:
            for p in self._poster_files():
                h.update(f"{p.name}\0{p.stat().st_size}\n".encode())
        return {"kind": self.kind, "path": str(self.path.resolve()), "sha256": h.hexdigest()}

    def count(self) -> int:
        """Rows in the source (duplicates included): the progress bar's total."""
        if self.table is None:
            return len(self._poster_files())
        if self.table.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(self.table).metadata.num_rows
        return sum(len(b["id"]) for b in self._batches(only_ids=True))

    # -- rows
    def parts(self, part_rows: int) -> Iterator[Part]:
        """Every part in order, the last one possibly short; ``dropped`` counts what is in none."""
        self.dropped = Counter()
        seen: set[str] = set()
        row = 0
        cols: dict[str, list] = {k: [] for k in INPUT_SCHEMA.names}
        first = 0  # first input row of the part being filled

        def flush(index: int, upto: int) -> Part:
            table = pa.table({k: pa.array(v, type=INPUT_SCHEMA.field(k).type) for k, v in cols.items()}, schema=INPUT_SCHEMA)
            for v in cols.values():
                v.clear()
            return Part(index, table, upto - index * part_rows)

        for batch in self._batches():
            for fid, poster, overview, note in zip(batch["id"], batch["poster"], batch["overview"], batch["note"]):
                if row - first >= part_rows:
                    yield flush(first // part_rows, row)
                    first = row
                row += 1
                if not fid:
                    self.dropped["missing Id"] += 1
                    continue
                if note == BAD_ID:
                    self.dropped[BAD_ID] += 1
                    continue
                if fid in seen:
                    self.dropped["duplicate Id (first kept)"] += 1
                    continue
                seen.add(fid)
                cols["_row"].append(row - 1)
                cols["Id"].append(fid)
                cols["poster"].append(poster)
                cols["overview"].append(overview)
                cols["note"].append(note)
        if row > first or row == 0:
            yield flush(first // part_rows, row)

    def _poster_files(self) -> list[Path]:
        folder = self.path / IMAGES_DIR if (self.path / IMAGES_DIR).is_dir() else self.path
        return sorted((p for p in folder.iterdir() if p.suffix.lower() in POSTER_SUFFIXES and p.is_file()), key=lambda p: p.name)

    def _batches(self, only_ids: bool = False) -> Iterator[dict]:
        """Batches of rows as lists: ``id``, ``poster`` (resolved source or None), ``overview`` (stripped or None), ``note``."""
        if self.kind == "posters":
            files = self._poster_files()
            for start in range(0, len(files), READ_ROWS):
                chunk = files[start : start + READ_ROWS]
                yield {"id": [p.stem for p in chunk], "poster": [str(p) for p in chunk], "overview": [None] * len(chunk), "note": [None] * len(chunk)}
            return
        roles = {"Id": self.columns["Id"]} if only_ids else dict(self.columns)
        base = self.table.parent
        for raw in self._table_batches(list(roles.values())):
            n = raw.num_rows
            ids = [_text(v)[0] for v in raw.column(roles["Id"]).to_pylist()]
            ids = [(i or "").strip() or None for i in ids]
            if only_ids:
                yield {"id": ids}
                continue
            notes: list[str | None] = [None] * n
            overviews: list[str | None] = [None] * n
            if "overview" in roles:
                for i, v in enumerate(raw.column(roles["overview"]).to_pylist()):
                    text, ok = _text(v)
                    if not ok:
                        notes[i] = "overview not UTF-8"
                    overviews[i] = (text or "").strip() or None if ok else None
            if self.kind == "dataset":
                # an Id such as ../x would name a file outside Images/: such rows are dropped (counted) in parts()
                posters = [str(self.path / IMAGES_DIR / f"{i}.jpg") if i and is_file_name(i) else None for i in ids]
                notes = [BAD_ID if i and not is_file_name(i) else note for i, note in zip(ids, notes)]
            elif "poster" in roles:
                posters = [_resolve(_text(v)[0], base) for v in raw.column(roles["poster"]).to_pylist()]
            else:
                posters = [None] * n
            yield {"id": ids, "poster": posters, "overview": overviews, "note": notes}

    def _table_batches(self, names: list[str]) -> Iterator[pa.RecordBatch]:
        if self.table.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            try:
                yield from pq.ParquetFile(self.table).iter_batches(batch_size=READ_ROWS, columns=names)
            except (pa.ArrowException, OSError) as exc:
                raise CatalogueError(f"{self.table} cannot be read past a damaged part ({exc})") from None
            return
        import pyarrow.csv as pacsv

        def malformed(_row) -> str:
            self.dropped["malformed CSV row"] += 1
            return "skip"

        # every column as bytes: text that is not UTF-8 is then one row's problem, not the reader's
        reader = pacsv.open_csv(
            self.table,
            read_options=pacsv.ReadOptions(block_size=4 << 20),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=malformed),
            convert_options=pacsv.ConvertOptions(include_columns=names, column_types={c: pa.binary() for c in names}),
        )
        try:
            yield from reader
        except (pa.ArrowException, OSError) as exc:
            raise CatalogueError(f"{self.table} cannot be read past a damaged row ({exc})") from None


def _text(value) -> tuple[str | None, bool]:
    """A cell as text: (text or None, whether it was valid UTF-8)."""
    if value is None:
        return None, True
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8"), True
        except UnicodeDecodeError:
            return None, False
    return str(value), True


def _resolve(poster: str | None, base: Path) -> str | None:
    """A manifest's poster cell as a source: an absolute path or a URI (relative paths are the manifest's)."""
    poster = (poster or "").strip()
    if not poster:
        return None
    if "://" in poster:
        return poster
    path = Path(poster).expanduser()
    return str(path if path.is_absolute() else base / path)


def _header(path: Path) -> list[str]:
    with open(path, "rb") as fh:
        line = fh.readline()
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CatalogueError(f"{path}: the header line is not UTF-8 text; expected {FORMAT_HELP}") from None
    return next(csv.reader([text]), [])


def _is_text(t: pa.DataType, integers: bool = False) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t)
            or pa.types.is_null(t) or (integers and pa.types.is_integer(t)))


def _check_types(path: Path, schema: pa.Schema, columns: dict) -> None:
    """Text columns only (an Id may also be an integer): a list or a number read as text would be a wrong answer."""
    for role, name in columns.items():
        t = schema.field(name).type
        if not _is_text(t, integers=role == "Id"):
            want = "text or integers" if role == "Id" else "text (string)"
            raise CatalogueError(f"{path}: column {name!r} ({role}) holds {t}, not {want}; write it as a string "
                                 f"column; expected {FORMAT_HELP}")


def open_catalogue(data: str | Path | None = None, manifest: str | Path | None = None) -> Catalogue:
    """Open and check a catalogue: exactly one of ``data`` (a folder) and ``manifest`` (a CSV or Parquet file)."""
    catalogue = _open(data, manifest)
    announce_data(catalogue.path, KINDS[catalogue.kind])
    return catalogue


def _open(data, manifest) -> Catalogue:
    if (data is None) == (manifest is None):
        raise CatalogueError(f"give one catalogue: {FORMAT_HELP}")
    if data is not None:
        root = Path(data).expanduser()
        if not root.is_dir():
            raise CatalogueError(f"catalogue folder {root} does not exist; expected {FORMAT_HELP}")
        table = root / CSV_NAME
        if not table.is_file():
            cat = Catalogue("posters", root)
            if not cat._poster_files():
                raise CatalogueError(f"{root} has neither {CSV_NAME} nor poster images; expected {FORMAT_HELP}")
            return cat
        header = [h.strip() for h in _header(table)]
        if "Id" not in header:
            raise CatalogueError(f"{table} has no Id column (columns: {', '.join(header) or 'none'}); expected {FORMAT_HELP}")
        columns = {"Id": "Id", **({"overview": "Overview"} if "Overview" in header else {})}
        return Catalogue("dataset", root, table, columns)
    path = Path(manifest).expanduser()
    if not path.is_file():
        raise CatalogueError(f"manifest {path} does not exist; expected {FORMAT_HELP}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            header = list(pq.ParquetFile(path).schema_arrow.names)
        except (pa.ArrowException, OSError) as exc:
            raise CatalogueError(f"{path} is not a readable Parquet file ({exc})") from None
    elif suffix == ".csv":
        header = _header(path)
    else:
        raise CatalogueError(f"manifest {path} must be a .csv or .parquet file; expected {FORMAT_HELP}")
    by_lower = {h.strip().lower(): h for h in header}
    columns = {role: by_lower[role.lower()] for role in ("Id", "poster", "overview") if role.lower() in by_lower}
    if "Id" not in columns:
        raise CatalogueError(f"{path} has no Id column (columns: {', '.join(header) or 'none'}); expected {FORMAT_HELP}")
    if len(columns) == 1:
        raise CatalogueError(f"{path} has neither a poster nor an overview column; expected {FORMAT_HELP}")
    if suffix == ".parquet":
        _check_types(path, pq.ParquetFile(path).schema_arrow, columns)
    return Catalogue("manifest", path, path, columns)


# -------------------------------------------------------------------------------------------------------- posters
_FILESYSTEMS: dict[tuple[str, str], object] = {}


def _filesystem(uri: str):
    """(pyarrow filesystem, path inside it) for a poster URI; one filesystem per scheme and host."""
    import pyarrow.fs as pafs

    parsed = urlparse(uri)
    key = (parsed.scheme, parsed.netloc)
    if key not in _FILESYSTEMS:
        _FILESYSTEMS[key] = pafs.FileSystem.from_uri(uri)[0]
    local = parsed.scheme in ("file", "local", "hdfs", "viewfs")
    return _FILESYSTEMS[key], parsed.path if local else parsed.netloc + parsed.path


# URI schemes read through pyarrow.fs; any other (http://, ftp://, ...) is refused with its name
URI_SCHEMES = ("file", "local", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")


def _too_large(source: str, size: int | None = None) -> PosterError:
    what = f"{size:,} bytes" if size is not None else "larger than that"
    return PosterError("poster too large", f"{source} is {what}; posters are at most {MAX_POSTER_BYTES:,} bytes")


def _bounded(fh, source: str) -> bytes:
    """At most ``MAX_POSTER_BYTES`` from ``fh``: one byte more is read to know that a stream is longer."""
    data = fh.read(MAX_POSTER_BYTES + 1)
    if len(data) > MAX_POSTER_BYTES:
        raise _too_large(source)
    return data


def read_poster(source: str) -> bytes:
    """A poster's bytes from a local path or a ``pyarrow.fs`` URI; :class:`PosterError` with a countable reason.

    Only regular files are read (a FIFO, a device or a folder is "poster not a regular file", never waited on), and
    never more than ``MAX_POSTER_BYTES`` + 1 bytes, whatever the file claims its size is."""
    try:
        if "://" in source:
            import pyarrow.fs as pafs

            scheme = urlparse(source).scheme.lower()
            if scheme not in URI_SCHEMES:
                raise PosterError(f"poster URI scheme {scheme}:// not supported",
                                  f"{source}: posters are read from paths or {', '.join(s + '://' for s in URI_SCHEMES)}")
            fs, path = _filesystem(source)
            info = fs.get_file_info(path)
            if info.type == pafs.FileType.NotFound:
                raise PosterError("poster missing", f"no file at {source}")
            if info.type != pafs.FileType.File:
                raise PosterError("poster not a regular file", f"{source} is a {info.type.name.lower()}")
            if info.size is not None and info.size > MAX_POSTER_BYTES:
                raise _too_large(source, info.size)
            with fs.open_input_stream(path) as fh:
                return _bounded(fh, source)
        # O_NONBLOCK: opening a FIFO with no writer returns at once (then refused) instead of waiting forever
        fd = os.open(source, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        with open(fd, "rb", closefd=True) as fh:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise PosterError("poster not a regular file", f"{source} is not a regular file (a FIFO, a device or a folder)")
            if st.st_size > MAX_POSTER_BYTES:
                raise _too_large(source, st.st_size)
            os.set_blocking(fd, True)
            return _bounded(fh, source)
    except FileNotFoundError:
        raise PosterError("poster missing", f"no file at {source}") from None
    except IsADirectoryError:
        raise PosterError("poster not a regular file", f"{source} is a folder") from None
    except (OSError, pa.ArrowException) as exc:
        raise PosterError("poster unreadable", f"{source}: {exc}") from None
