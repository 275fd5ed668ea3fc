#!/usr/bin/env bash
# Set up with the test tools, lint, and run the whole test suite, then the model tests again on a second Keras backend (JAX).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
.venv/bin/python -m pip install -q -e '.[ray]'  # --engine ray: the catalogue tests run a local Ray
.venv/bin/ruff check src tests benchmarks
export MOVIE_GENRES_CACHE=${MOVIE_GENRES_CACHE:-$PWD/.cache/movie-genres}
.venv/bin/python -m pytest -q "$@"
.venv/bin/python -m pip install -q 'jax==0.10.2'
KERAS_BACKEND=jax .venv/bin/python -m pytest -q tests/test_models.py
