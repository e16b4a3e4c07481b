#!/usr/bin/env bash
# Local operations toolkit. On first use (or when requirements.txt changed) it creates .venv with
# the machine's python3 (3.10+) and installs requirements.txt; then it hands over to the Python
# CLI in src/main.py. ./run.sh help lists the commands.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
STAMP="$VENV/.requirements.sha256"

say() { printf '[run.sh] %s\n' "$*" >&2; }

find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11 python3.10; do
        [ -n "$candidate" ] || continue
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
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
    if [ ! -x "$VENV/bin/python" ]; then
        local py
        if ! py="$(find_python)"; then
            say "error: Python 3.10 or newer is required (python3 not found or too old); install it or set PYTHON=/path/to/python3"
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
