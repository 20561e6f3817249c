#!/usr/bin/env bash
# Rebuild everything derived from the simulation campaign store (data/sim), in
# order: the training set and its trends figure, the digital twin (from the
# set's held-out structures and the real SI's background), the default model and
# its rule for partly covered K edges, the evaluation report and the demo. Needs the real NMC data for the twin
# (MMSPEC_DATA_MIRROR, default ../shared/data). About 30 min on two cores.
#
#   bash scripts/rebuild.sh            # uses .venv (bash scripts/demo.sh makes it)
#   PYTHON=/path/to/python bash scripts/rebuild.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export MMSPEC_DATA_MIRROR=${MMSPEC_DATA_MIRROR:-$(cd .. && pwd)/shared/data}
FUSION=${FUSION:-early}
TRIALS=${TRIALS:-20}

$PY -m mmspec_widgets.cli simulate --assemble --out data/sim --dataset data/training_set.nc \
    --trends docs/simulation_trends.png > /tmp/mmspec-trends.json
cat /tmp/mmspec-trends.json
$PY -m mmspec_widgets.twin
$PY -m mmspec_widgets.cli train --fusion "$FUSION" --trials "$TRIALS"
$PY benchmarks/xanes_coverage.py   # the partial-K-edge rule, measured on the new model
$PY scripts/chain_reference.py      # the maps tests/test_chain_reference.py compares against
$PY -m mmspec_widgets.cli evaluate --report docs --cv 4 --explain
$PY -m mmspec_widgets.cli demo --out /tmp/mmspec-demo
