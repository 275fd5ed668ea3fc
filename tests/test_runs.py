"""The run folder module: resolving a folder of runs, expanding it in the registry's order, clear errors."""
from __future__ import annotations

import json

import pytest

from movie_genres import runs
from movie_genres.models.registry import MODELS, members, needs


def _run(folder, model):
    folder.mkdir(parents=True)
    for name in runs.FINISHED:
        (folder / name).write_text("{}")
    (folder / runs.METRICS).write_text(json.dumps({"model": model}))
    return folder


def test_a_folder_of_runs_resolves_to_its_best_and_expands_in_registry_order(tmp_path):
    job = tmp_path / "main"
    for name in ("late", "cnn", "text", "zzz-extra", "bilstm"):
        _run(job / name, name)
    (job / "logs").mkdir()
    (job / runs.BEST).write_text(json.dumps({"run": "text"}))
    assert runs.resolve_run(job) == job / "text"
    assert [p.name for p in runs.expand_runs([job, tmp_path / "other"])] == ["cnn", "bilstm", "text", "late", "zzz-extra", "other"]

    (job / runs.BEST).write_text(json.dumps({"run": "gone"}))
    with pytest.raises(runs.RunError, match="does not exist"):
        runs.resolve_run(job)


def test_unfinished_or_damaged_run_folders_give_clear_errors(tmp_path):
    run = _run(tmp_path / "run", "cnn")
    (run / runs.THRESHOLDS).unlink()
    (run / runs.CHECKPOINT).mkdir()
    with pytest.raises(runs.RunError, match="missing thresholds.json .*--resume"):
        runs.resolve_run(run)
    (run / runs.GENRES).write_text('{"genres": ["Drama"')
    with pytest.raises(runs.RunError, match="genres.json is damaged"):
        runs.read_genres(run)
    assert runs.read_thresholds(run, required=False) is None
    runs.write_thresholds(run, ["Drama", "Comedy"], [0.5, 0.4])
    with pytest.raises(runs.RunError, match="disagree"):
        runs.read_thresholds(run, genres=["Comedy", "Drama"])
    from movie_genres.predictor import RunError

    assert RunError is runs.RunError  # still importable where it was


def test_the_registry_declares_members_and_dependencies():
    assert MODELS == ("cnn", "bilstm", "text", "image", "early", "gmu", "late", "ensemble")
    assert members("late") == ("text", "image") and members("ensemble") == ("text", "image", "early", "gmu")
    assert needs("early") == needs("gmu") == ("text", "image") and members("gmu") == ()
    assert needs("ensemble") == ("text", "image", "early", "gmu") and needs("cnn") == ()
