#!/usr/bin/env bash
# Run a benchmark in its own virtual environment, benchmarks/.venv: the project's requirements.txt
# plus benchmarks/requirements.txt (dlt, duckdb: peers we compare with, not product dependencies).
# Created on first use and re-installed when either file changes.
#   benchmarks/run.sh load_throughput.py --rows 1000000 4000000
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
VENV="$HERE/.venv"
STAMP="$VENV/.requirements.sha256"

if [ $# -lt 1 ]; then
    echo "usage: benchmarks/run.sh SCRIPT.py [ARGS...]   (e.g. load_throughput.py --rows 2000000)" >&2
    exit 2
fi

want="$(cat "$ROOT/requirements.txt" "$HERE/requirements.txt" | sha256sum | cut -d' ' -f1)"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [ ! -x "$VENV/bin/python" ] || [ "$want" != "$have" ]; then
    PY="${PYTHON:-python3}"
    if [ ! -x "$VENV/bin/python" ]; then
        echo "[benchmarks] creating $VENV with $("$PY" --version 2>&1)" >&2
        "$PY" -m venv "$VENV"
    fi
    echo "[benchmarks] installing requirements.txt + benchmarks/requirements.txt (log: $VENV/pip-install.log)" >&2
    if ! "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off \
            -r "$ROOT/requirements.txt" -r "$HERE/requirements.txt" > "$VENV/pip-install.log" 2>&1; then
        echo "[benchmarks] error: pip install failed; the end of its output:" >&2
        tail -n 25 "$VENV/pip-install.log" >&2
        exit 1
    fi
    echo "$want" > "$STAMP"
fi

script="$1"
shift
[ -f "$script" ] || script="$HERE/$script"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
exec "$VENV/bin/python" "$script" "$@"
