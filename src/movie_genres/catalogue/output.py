"""A catalogue's output: parts written atomically as they finish, then one table and its summary.

For ``--output OUT.parquet`` (or ``OUT.csv``):

- ``OUT.parquet.parts/stamp.json`` says which run (its files' sha256) and which input (the catalogue's fingerprint)
  the parts belong to, and how many input rows a part holds;
- ``OUT.parquet.parts/part-000000.parquet``, ... one per part, each written to a temporary name and renamed, so a part
  file is there whole or not at all;
- when every part is there, ``OUT.parquet`` is assembled from them in order (streamed, one part at a time), then
  ``OUT.parquet.summary.json`` (the counts and the stamp), and the parts folder is removed.

Run again with the same run and input, the same command continues from the parts that are there (no duplicate rows,
none lost) or, if the output is complete, says so. Parts or an output from another run or input are refused.

One job at a time per output: ``OUT.parquet.lock`` (an ``flock``, removed when the job ends) is held from
:meth:`PartStore.begin` to :meth:`PartStore.close`; a second job on the same output is refused at once
(:class:`OutputBusy`). The output is assembled only when every part is there with the rows it was given
(:class:`OutputIncomplete` otherwise), and "already complete" is said only of an output whose rows match its summary.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from movie_genres.catalogue.batch import REVIEW_BAND
from movie_genres.catalogue.errors import OutputBusy, OutputIncomplete, OutputMismatch
from movie_genres.io import _clear_errors, atomic_write, read_json, write_json
from movie_genres.runs import Run

STAMP_FORMAT = 1
DEFAULT_DECISIONS = {"review_band": REVIEW_BAND}  # the catalogue's own decision settings: not in the stamp
FORMATS = (".parquet", ".csv")


def run_fingerprint(run_dir: Path, decisions: dict | None = None) -> dict:
    """The run a prediction came from: its folder and the sha256 of the files that decide the answers (and of any
    predict-time decision settings: another threshold, top-k or review band gives other rows)."""
    run = Run(run_dir)
    h = hashlib.sha256()
    changed = {k: v for k, v in (decisions or {}).items() if v is not None and v != DEFAULT_DECISIONS.get(k)}
    if changed:
        h.update(json.dumps(changed, sort_keys=True).encode() + b"\0")
    for path in run.answer_files():
        h.update(path.name.encode() + b"\0")
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return {"dir": str(run.path.resolve()), "model": run.model_name, "sha256": h.hexdigest()}


def _same(a: dict, b: dict) -> bool:
    return a["run"]["sha256"] == b["run"]["sha256"] and a["input"] == b["input"]


class PartStore:
    """The parts folder of one output, and the assembled output."""

    def __init__(self, output: str | Path, run: dict, source: dict, part_rows: int):
        self.output = Path(output)
        if self.output.suffix.lower() not in FORMATS:
            raise ValueError(f"--output {self.output}: give a .parquet or .csv file name")
        self.parts_dir = self.output.with_name(self.output.name + ".parts")
        self.summary_path = self.output.with_name(self.output.name + ".summary.json")
        self.lock_path = self.output.with_name(self.output.name + ".lock")
        self.stamp = {"format": STAMP_FORMAT, "run": run, "input": source, "part_rows": int(part_rows)}
        self.expected: dict[int, int] = {}  # part index -> its rows, as the job handed them out (has())
        self._lock_fd: int | None = None

    # -- one job per output
    def lock(self) -> None:
        """Take ``OUT.lock`` or raise :class:`OutputBusy`; the file is the lock only while it is still the one at
        that path (a job that ends removes it, so a job that opened the old file tries again)."""
        import fcntl

        while self._lock_fd is None:
            with _clear_errors(self.lock_path):  # a read-only or full output folder: OutputError, as for any write
                self.output.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                try:
                    holder = open(self.lock_path, encoding="utf-8").read().strip() or "?"
                except OSError:
                    holder = "?"
                raise OutputBusy(f"another job (process {holder}) is writing {self.output} now; wait for it to "
                                 f"finish, or give another --output") from None
            try:
                same = os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # removed by the job that held it while this one waited to open it
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            self._lock_fd = fd

    def close(self) -> None:
        """Let the next job have the output (idempotent)."""
        if self._lock_fd is not None:
            try:
                self.lock_path.unlink()
            except FileNotFoundError:
                pass
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "PartStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _refuse(self, where: Path, theirs: dict | None) -> OutputMismatch:
        if theirs is None:
            what = "was not written by movie-genres predict"
        else:
            diff = []
            if theirs.get("run", {}).get("sha256") != self.stamp["run"]["sha256"]:
                diff.append(f"by run {theirs.get('run', {}).get('dir')} ({theirs.get('run', {}).get('model')}), not {self.stamp['run']['dir']}")
            if theirs.get("input") != self.stamp["input"]:
                diff.append(f"from {theirs.get('input', {}).get('path')}, not {self.stamp['input']['path']}"
                            + (" (same path, other content)" if theirs.get("input", {}).get("path") == self.stamp["input"]["path"] else ""))
            what = "was written " + " and ".join(diff)
        return OutputMismatch(f"{where} {what}; give another --output, or delete {where} to start again")

    def begin(self) -> str:
        """"complete" (nothing to do), "resume" (parts there) or "fresh"; raises :class:`OutputMismatch`, or
        :class:`OutputBusy` when another job holds the output (the lock is held from here until :meth:`close`)."""
        self.lock()
        stamp_path = self.parts_dir / "stamp.json"
        if self.parts_dir.is_dir() and not stamp_path.exists() and not any(self.parts_dir.glob("part-*")):
            shutil.rmtree(self.parts_dir)  # stopped before its stamp was written: nothing in it to keep
        if self.parts_dir.exists():
            try:
                theirs = read_json(stamp_path)
            except (OSError, ValueError):
                theirs = None
            if theirs is None or theirs.get("format") != STAMP_FORMAT or not _same(theirs, self.stamp):
                raise self._refuse(self.parts_dir, theirs)
            self.stamp["part_rows"] = theirs["part_rows"]  # parts keep the size they were started with
            return "resume"
        if self.output.exists():
            try:
                theirs = read_json(self.summary_path)["stamp"]
            except (OSError, ValueError, KeyError, TypeError):
                theirs = None
            if theirs is None or not _same(theirs, self.stamp):
                raise self._refuse(self.output, theirs)
            have, want = self._output_rows(), read_json(self.summary_path).get("rows")
            if have != want:
                raise OutputIncomplete(f"{self.output} holds {have if have is not None else 'unreadable'} rows but its "
                                       f"summary says {want}; delete {self.output} and run again")
            return "complete"
        write_json(stamp_path, self.stamp)
        return "fresh"

    @property
    def part_rows(self) -> int:
        return self.stamp["part_rows"]

    def _part_path(self, index: int) -> Path:
        return self.parts_dir / f"part-{index:06d}.parquet"

    def _output_rows(self) -> int | None:
        try:
            if self.output.suffix.lower() == ".parquet":
                return pq.read_metadata(self.output).num_rows
            import pyarrow.csv as pacsv

            with pacsv.open_csv(self.output, convert_options=pacsv.ConvertOptions(include_columns=["Id"])) as r:
                return sum(b.num_rows for b in r)
        except (OSError, pa.ArrowException):
            return None

    def has(self, index: int, rows: int) -> bool:
        """Whether part ``index`` is written whole with its ``rows`` rows (a part that does not read back is redone).
        Every part the job hands out goes through here: ``rows`` is what :meth:`assemble` then requires of it."""
        self.expected[index] = int(rows)
        path = self._part_path(index)
        if not path.is_file():
            return False
        try:
            return pq.read_metadata(path).num_rows == rows
        except (OSError, pa.ArrowException):
            return False

    def write(self, index: int, table: pa.Table) -> None:
        atomic_write(self._part_path(index), lambda tmp: pq.write_table(table, tmp))

    def status_counts(self) -> Counter:
        counts: Counter = Counter()
        for path in sorted(self.parts_dir.glob("part-*.parquet")):
            counts.update(pq.read_table(path, columns=["status"]).column("status").to_pylist())
        return counts

    def assemble(self, schema: pa.Schema, parts: list[int], summary: dict) -> dict:
        """Write the output from ``parts`` (in order), then the summary; remove the parts folder. Every part must be
        there with its rows (:class:`OutputIncomplete` otherwise, the parts kept for the same command to redo)."""
        bad = [i for i in parts if i not in self.expected or not self.has(i, self.expected[i])]
        if bad:
            shown = ", ".join(self._part_path(i).name for i in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            raise OutputIncomplete(f"{len(bad)} of {len(parts)} parts of {self.output} are missing or short ({shown}); "
                                   "nothing was assembled: run the same command again to redo them")
        rows = sum(self.expected[i] for i in parts)
        if summary.get("rows") != rows:
            raise OutputIncomplete(f"the parts of {self.output} hold {summary.get('rows')} rows, not the {rows} the "
                                   "input gave; nothing was assembled: run the same command again")
        schema = pa.schema([f for f in schema if not f.name.startswith("_")])
        csv = self.output.suffix.lower() == ".csv"

        def tables():
            for index in parts:
                yield pq.read_table(self._part_path(index)).select(schema.names)

        def write(tmp: Path) -> None:
            if csv:
                import pyarrow.csv as pacsv

                flat = _csv_schema(schema)
                with pacsv.CSVWriter(tmp, flat, write_options=pacsv.WriteOptions(quoting_header="needed")) as w:
                    for t in tables():
                        w.write_table(_for_csv(t, flat))
            else:
                with pq.ParquetWriter(tmp, schema) as w:
                    for t in tables():
                        w.write_table(t.cast(schema))

        atomic_write(self.output, write)
        summary = {**summary, "stamp": self.stamp}
        write_json(self.summary_path, summary)
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        return summary

    def read_summary(self) -> dict:
        shutil.rmtree(self.parts_dir, ignore_errors=True)  # left over if the last run stopped after assembling
        return read_json(self.summary_path)


def _csv_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([(f.name, pa.string()) if pa.types.is_list(f.type) else f for f in schema])


def _for_csv(table: pa.Table, flat: pa.Schema) -> pa.Table:
    """List columns as JSON text (``["Comedy", "Drama"]``), which CSV cannot hold otherwise."""
    cols = []
    for f in table.schema:
        col = table.column(f.name)
        if pa.types.is_list(f.type):
            col = pa.array([json.dumps(v) for v in col.to_pylist()], pa.string())
        cols.append(col)
    return pa.table(cols, schema=flat)
