#!/usr/bin/env bash
# Install the project into .venv and run the main job on the embedded default
# data: the synthetic NMC spectrum image shipped in data/, calibrated,
# background-subtracted and mapped with the default model.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
exec .venv/bin/mmspec demo "$@"
