"""Atomic writes: a crash mid-write never leaves a half-written artifact; disk errors are one clear OutputError."""
from __future__ import annotations

import errno

import pytest

from movie_genres.io import OutputError, atomic_write, new_run_dir, read_json, write_json


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"ok": 1})

    def crash(tmp):
        tmp.write_text('{"half": ')
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(target, crash)
    assert read_json(target) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    assert oct(target.stat().st_mode & 0o777) == "0o644"


@pytest.mark.parametrize("code, message", [(errno.ENOSPC, "no space left"), (errno.EROFS, "read-only"), (errno.EACCES, "read-only")])
def test_disk_errors_become_one_clear_error(tmp_path, code, message):
    def fail(tmp):
        raise OSError(code, "simulated")

    with pytest.raises(OutputError, match=message):
        atomic_write(tmp_path / "model.keras", fail)


def test_new_run_dir_never_reuses_a_non_empty_folder(tmp_path):
    a = new_run_dir(tmp_path / "exp")
    (a / "config.json").write_text("{}")
    b = new_run_dir(tmp_path / "exp")
    (b / "config.json").write_text("{}")
    assert (a.name, b.name, new_run_dir(tmp_path / "exp").name) == ("exp", "exp2", "exp3")
