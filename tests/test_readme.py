"""The README's Python snippets run as written.

Each ```python block of README.md runs (in this process) from a scratch working directory laid out like a checkout
next to its data: ``../shared/data/multimodal-imdb`` is a tiny synthetic dataset and ``poster.jpg`` a poster, so the
snippets' relative paths (``runs/gmu``, ``poster.jpg``) mean what they mean in the repository root, without editing the
text. A block whose first line is ``# not run by tests/test_readme.py`` is left out.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import synthetic_rows, write_dataset

README = Path(__file__).resolve().parents[1] / "README.md"
SKIP_MARK = "# not run by tests/test_readme.py"


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(first line number, code) of every ```python block."""
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M)]


BLOCKS = [(line, code) for line, code in python_blocks(README.read_text(encoding="utf-8")) if not code.startswith(SKIP_MARK)]


def test_the_readme_has_python_snippets():
    assert len(BLOCKS) >= 1 and python_blocks("a\n```python\nx = 1\n```\n") == [(3, "x = 1\n")]


@pytest.fixture
def checkout(tmp_path, monkeypatch, cache_dir):
    """A scratch ``repo`` folder with ``../shared/data/multimodal-imdb`` (tiny data) beside it; the working directory.
    The snippets train the default family (mpnet): on the tests' shared cache, where test_mpnet.py made its graphs."""
    monkeypatch.setenv("MOVIE_GENRES_CACHE", cache_dir)
    rows = synthetic_rows(60)
    data = write_dataset(tmp_path / "shared" / "data" / "multimodal-imdb", rows)
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "poster.jpg").write_bytes((data / "Images" / f"{rows[0]['Id']}.jpg").read_bytes())
    monkeypatch.chdir(repo)
    return repo


@pytest.mark.slow
@pytest.mark.mpnet
@pytest.mark.parametrize("line, code", BLOCKS, ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_readme_snippet_runs(checkout, line, code):
    exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "readme"})
