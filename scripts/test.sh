#!/usr/bin/env bash
# Install the project with its test extras into .venv and run the whole test
# suite (unit tests, real-data tests, notebooks under nbval, browser test).
# Usage: bash scripts/test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

# Headless Chromium for the browser test (Debian packages), when missing.
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing Debian chromium for the browser test ..."
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    else
        echo "warning: chromium not found and cannot be installed (needs root + apt-get)" >&2
    fi
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
# two workers (the machines this runs on have two cores); whole files per
# worker, so a file's module fixtures are built once and notebooks run whole
exec .venv/bin/python -m pytest -n "${MMSPEC_TEST_WORKERS:-2}" --dist loadfile "$@"
