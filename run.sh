#!/usr/bin/env bash
# Local operations toolkit. On first use (or when requirements.txt changed) it creates .venv with
# the machine's python3 (3.11+; PYTHON=/path/to/python3.x chooses one) and installs
# requirements.txt; then it hands over to the Python CLI in src/main.py. ./run.sh help lists the
# commands.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
STAMP="$VENV/.requirements.sha256"

say() { printf '[run.sh] %s\n' "$*" >&2; }

# The oldest Python the pinned requirements install on (pandas, pyarrow and pydantic-settings have
# no 3.10 wheels; the code uses datetime.UTC).
MIN_PY="3.11"
HOW_TO_GET_PY="get one with uv (uv python install 3.12, see https://docs.astral.sh/uv/), pyenv (pyenv install 3.12) or, on Debian/Ubuntu, the deadsnakes PPA (apt-get install python3.12 python3.12-venv); then run again, with PYTHON=/path/to/python3.12 if it is not on PATH"

new_enough() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null
}

py_version() {
    "$1" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null || echo "unknown version"
}

# The first Python >= 3.11: $PYTHON when set (and only it), else python3, python3.13 ... python3.11.
find_python() {
    local candidate candidates=(python3 python3.13 python3.12 python3.11)
    [ -n "${PYTHON:-}" ] && candidates=("$PYTHON")
    TOO_OLD=""
    for candidate in "${candidates[@]}"; do
        command -v "$candidate" >/dev/null 2>&1 || continue
        if new_enough "$candidate"; then
            echo "$candidate"
            return 0
        fi
        TOO_OLD="${TOO_OLD:+$TOO_OLD, }$candidate is $(py_version "$candidate")"
    done
    return 1
}

bootstrap() {
    local want have=""
    want="$(sha256sum requirements.txt | cut -d' ' -f1)"
    [ -f "$STAMP" ] && have="$(cat "$STAMP")"
    if [ -x "$VENV/bin/python" ] && [ "$want" = "$have" ]; then
        return 0
    fi
    if [ -x "$VENV/bin/python" ] && ! new_enough "$VENV/bin/python"; then
        say "error: .venv was created with Python $(py_version "$VENV/bin/python"); data-processor needs Python $MIN_PY or newer: remove .venv (rm -rf .venv) and run again with a newer Python ($HOW_TO_GET_PY)"
        exit 1
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        local py
        if ! py="$(find_python)"; then
            find_python >/dev/null || true  # again in this shell, for TOO_OLD
            say "error: Python $MIN_PY or newer is required (${TOO_OLD:-no python3 found${PYTHON:+: PYTHON=$PYTHON}}); $HOW_TO_GET_PY"
            exit 1
        fi
        say "Creating virtual environment .venv with $("$py" --version 2>&1)"
        if ! "$py" -m venv "$VENV"; then
            say "error: could not create .venv (on Debian/Ubuntu: apt-get install python3-venv)"
            rm -rf "$VENV"
            exit 1
        fi
    fi
    say "Installing requirements.txt into .venv (first run or requirements changed)..."
    if ! "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off -r requirements.txt \
            > "$VENV/pip-install.log" 2>&1; then
        say "error: pip install -r requirements.txt failed; the end of its output:"
        grep -v "is ignored: it is neither a file nor a directory" "$VENV/pip-install.log" | tail -n 25 >&2
        say "full log: $VENV/pip-install.log"
        exit 1
    fi
    echo "$want" > "$STAMP"
    say "Dependencies installed."
}

bootstrap
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
exec "$VENV/bin/python" "$ROOT/src/main.py" "$@"
