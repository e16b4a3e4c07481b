#!/usr/bin/env bash
# Idempotent deployment of this project to a Linux server over SSH (docs/deployment.md):
#   ./deploy.sh USER HOST [--clean] [--path DIR] [--port N] [--identity FILE] [--dry-run]
# Preflight (SSH, remote python3 >= 3.11, rsync on both ends, writable target), rsync of the
# code (never .env, .venv, data/, logs/, run/; pipeline modules gone locally are removed), then on
# the server: .env from env.example if missing, the venv through run.sh's own bootstrap, setup_db,
# migrate, setup_cron --all (which drops the removed pipelines' cron entries), check.
# Extra ssh options: SSH_OPTS="-o ProxyJump=bastion" ./deploy.sh ...
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STARTED=$SECONDS

say() { printf '[deploy] %s\n' "$*"; }
warn() { printf '[deploy] warning: %s\n' "$*" >&2; }
die() { printf '[deploy] error: %s\n' "$*" >&2; exit 1; }

usage() {
    cat <<'EOF'
Usage: ./deploy.sh USER HOST [--clean] [--path DIR] [--port N] [--identity FILE] [--dry-run]

Deploy this project to HOST over SSH and verify it with ./run.sh check.

  --path DIR        remote project directory (default: data-processor, relative to the
                    remote user's home)
  --port N          SSH port (default: ssh's own, usually 22)
  --identity FILE   SSH private key to log in with
  --clean           delete remote files that no longer exist locally
                    (never .env, .venv, data/, logs/, run/); pipeline modules
                    (src/pipelines/*_pipeline.py) gone locally are removed, and
                    their cron entries, on every deploy
  --dry-run         show what would be transferred and run; change nothing on the server
  -h, --help        show this help

Environment: SSH_OPTS adds ssh options (e.g. SSH_OPTS="-o ProxyJump=bastion");
DEPLOY_CONNECT_TIMEOUT sets the SSH connect timeout in seconds (default 10).
EOF
}

usage_error() {
    printf '[deploy] error: %s\n' "$*" >&2
    printf 'Usage: ./deploy.sh USER HOST [--clean] [--path DIR] [--port N] [--identity FILE] [--dry-run]\n' >&2
    exit 2
}

# ---- arguments --------------------------------------------------------------------------------
CLEAN=0 DRY_RUN=0 PORT="" IDENTITY="" REMOTE_PATH="data-processor"
positional=()
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --clean) CLEAN=1 ;;
        --dry-run) DRY_RUN=1 ;;
        --path|--port|--identity)
            [ $# -ge 2 ] || usage_error "$1 needs a value"
            case "$1" in --path) REMOTE_PATH="$2" ;; --port) PORT="$2" ;; --identity) IDENTITY="$2" ;; esac
            shift ;;
        --path=*) REMOTE_PATH="${1#*=}" ;;
        --port=*) PORT="${1#*=}" ;;
        --identity=*) IDENTITY="${1#*=}" ;;
        -*) usage_error "unknown option '$1'" ;;
        *) positional+=("$1") ;;
    esac
    shift
done
[ ${#positional[@]} -eq 2 ] || usage_error "expected USER and HOST, got ${#positional[@]} argument(s)"
USER_NAME="${positional[0]}" HOST="${positional[1]}"
[[ "$USER_NAME" =~ ^[A-Za-z0-9._][A-Za-z0-9._-]*$ ]] || usage_error "invalid user name '$USER_NAME'"
[[ "$HOST" =~ ^[A-Za-z0-9._:%-]+$ && "$HOST" != -* ]] || usage_error "invalid host '$HOST'"
if [ -n "$PORT" ]; then
    [[ "$PORT" =~ ^[0-9]+$ ]] && [ "$PORT" -ge 1 ] && [ "$PORT" -le 65535 ] \
        || usage_error "--port must be a number from 1 to 65535, got '$PORT'"
fi
if [ -n "$IDENTITY" ] && [ ! -r "$IDENTITY" ]; then
    usage_error "--identity $IDENTITY: no such readable file"
fi
# The path ends up in remote shell commands and rsync arguments: keep it to characters that
# need no quoting anywhere. "~/x" means x under the remote home, like a relative path.
REMOTE_PATH="${REMOTE_PATH#\~/}"
while [ "${#REMOTE_PATH}" -gt 1 ] && [ "${REMOTE_PATH%/}" != "$REMOTE_PATH" ]; do REMOTE_PATH="${REMOTE_PATH%/}"; done
[[ "$REMOTE_PATH" =~ ^[A-Za-z0-9._/+-]+$ ]] \
    || usage_error "--path '$REMOTE_PATH': use only letters, digits and . _ - + / (no spaces or quotes)"
[[ "$REMOTE_PATH" != "/" && "$REMOTE_PATH" != "." && "$REMOTE_PATH" != ".." && "$REMOTE_PATH" != -* ]] \
    || usage_error "--path '$REMOTE_PATH' is not a project directory"
TARGET="$USER_NAME@$HOST"
WHERE="$TARGET:$REMOTE_PATH"

# ---- local preflight --------------------------------------------------------------------------
command -v ssh >/dev/null 2>&1 || die "ssh is not installed locally (Debian/Ubuntu: apt-get install openssh-client)"
command -v rsync >/dev/null 2>&1 || die "rsync is not installed locally (Debian/Ubuntu: apt-get install rsync)"
for f in run.sh requirements.txt src/main.py; do
    [ -e "$ROOT/$f" ] || die "$ROOT does not look like the project: $f is missing"
done

# One SSH connection for the whole deploy (ControlMaster): every later ssh and rsync call
# reuses it, so a deploy costs one login. The socket lives in a short private temp dir
# (unix socket paths are limited to ~100 characters).
TMP="$(mktemp -d /tmp/deploy.XXXXXX)"
SSH_ARGS=(-o BatchMode=yes -o ControlPath="$TMP/cm" -o ControlPersist=yes)
[ -n "$PORT" ] && SSH_ARGS+=(-p "$PORT")
[ -n "$IDENTITY" ] && SSH_ARGS+=(-i "$IDENTITY" -o IdentitiesOnly=yes)
if [ -n "${SSH_OPTS:-}" ]; then
    read -r -a extra_opts <<<"$SSH_OPTS"
    SSH_ARGS+=("${extra_opts[@]}")
fi
SSH_ARGS+=(-o ConnectTimeout="${DEPLOY_CONNECT_TIMEOUT:-10}")
MASTER=0
cleanup() {
    if [ "$MASTER" = 1 ]; then
        ssh "${SSH_ARGS[@]}" -O exit "$TARGET" >/dev/null 2>&1 || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
# rsync takes its remote shell as one string; a wrapper script keeps every option intact.
{
    printf '#!/usr/bin/env bash\n'
    printf 'exec ssh'
    printf ' %q' "${SSH_ARGS[@]}"
    printf ' "$@"\n'
} >"$TMP/ssh"
chmod +x "$TMP/ssh"

# remote COMMAND: run a shell command line on the server (stdin from /dev/null).
remote() { ssh "${SSH_ARGS[@]}" "$TARGET" "$@" </dev/null; }

last_line() { grep -v -e '^[[:space:]]*$' -e '^Warning: Permanently added' "$1" | tail -n 1 || true; }

say "deploying $ROOT to $WHERE$( ((DRY_RUN)) && echo ' (dry run)')"

# ---- remote preflight -------------------------------------------------------------------------
if ! ssh "${SSH_ARGS[@]}" -o ControlMaster=yes -f -N "$TARGET" </dev/null >/dev/null 2>"$TMP/ssh.err"; then
    die "cannot log in to $TARGET over SSH${PORT:+ (port $PORT)}: $(last_line "$TMP/ssh.err")" \
        "-- check host, port, user and key: 'ssh${PORT:+ -p $PORT} $TARGET true' must work without a password prompt"
fi
MASTER=1

# Read-only probe of the server: prints key=value lines.
PROBE='
p=$1
for c in python3 python3.13 python3.12 python3.11; do
    command -v "$c" >/dev/null 2>&1 || continue
    v=$("$c" -c "import sys; print(\"%d.%d.%d\" % sys.version_info[:3])" 2>/dev/null) || continue
    if "$c" -c "import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)" 2>/dev/null; then
        echo "python=$c $v"
        if "$c" -c "import venv, ensurepip" >/dev/null 2>&1; then echo "venv_module=yes"; else echo "venv_module=no"; fi
        break
    fi
    echo "old_python=$c $v"
done
if command -v rsync >/dev/null 2>&1; then echo "rsync=yes"; fi
if [ -x "${CRONTAB_COMMAND:-}" ] || command -v crontab >/dev/null 2>&1; then echo "crontab=yes"; fi
case "$p" in /*) abs=$p ;; *) abs=$HOME/$p ;; esac
echo "abs=$abs"
if [ -e "$abs" ] || [ -L "$abs" ]; then
    if [ ! -d "$abs" ]; then echo "dir=notdir $abs"
    elif [ ! -w "$abs" ] || [ ! -x "$abs" ]; then echo "dir=readonly $abs"
    else
        echo "dir=exists"
        if [ -f "$abs/run.sh" ]; then echo "project=yes"
        elif [ -n "$(ls -A "$abs" 2>/dev/null)" ]; then echo "project=foreign"; fi
        [ -f "$abs/.env" ] && echo "env=yes"
        [ -f "$abs/env.example" ] && echo "env_example=yes"
        [ -x "$abs/.venv/bin/python" ] && echo "venv=yes"
        [ -f "$abs/.venv/.requirements.sha256" ] && echo "stamp=$(cat "$abs/.venv/.requirements.sha256")"
    fi
else
    a=$(dirname "$abs")
    while [ ! -e "$a" ] && [ "$a" != / ]; do a=$(dirname "$a"); done
    if [ ! -d "$a" ]; then echo "dir=notdir $a"
    elif [ ! -w "$a" ] || [ ! -x "$a" ]; then echo "dir=readonly $a"
    else echo "dir=new"; fi
fi
exit 0
'
if ! remote "sh -c '$PROBE' probe $REMOTE_PATH" >"$TMP/probe" 2>"$TMP/probe.err"; then
    die "could not inspect $HOST over SSH (the read-only probe failed): $(last_line "$TMP/probe.err")"
fi
probe() { sed -n "s/^$1=//p" "$TMP/probe" | head -n 1; }

# The same minimum and advice as run.sh (which builds the server's venv).
HOW_TO_GET_PY="install one with uv (uv python install 3.12), pyenv (pyenv install 3.12) or, on Debian/Ubuntu, the deadsnakes PPA (apt-get install python3.12 python3.12-venv), as python3.11 ... python3.13 on $USER_NAME's PATH"
if [ -z "$(probe python)" ]; then
    old="$(probe old_python)"
    if [ -n "$old" ]; then
        die "remote python3 is too old ($old); data-processor needs Python 3.11 or newer on $HOST: $HOW_TO_GET_PY"
    fi
    die "python3 is not installed on $HOST (Python 3.11 or newer is needed): $HOW_TO_GET_PY"
fi
[ "$(probe rsync)" = yes ] || die "rsync is not installed on $HOST (Debian/Ubuntu: apt-get install rsync)"
ABS="$(probe abs)"
case "$(probe dir)" in
    exists|new) ;;
    notdir*) die "remote directory $ABS is not writable: $(probe dir | cut -d' ' -f2-) is not a directory" ;;
    readonly*) die "remote directory $ABS is not writable by $USER_NAME (no write permission on $(probe dir | cut -d' ' -f2-))" ;;
    *) die "could not inspect the remote directory $ABS: $(cat "$TMP/probe" "$TMP/probe.err" | tail -n 3)" ;;
esac
if [ "$(probe venv)" != yes ] && [ "$(probe venv_module)" = no ]; then
    die "remote $(probe python) cannot create virtual environments (Debian/Ubuntu: apt-get install python3-venv)"
fi
if ((CLEAN)) && [ "$(probe project)" = foreign ]; then
    die "--clean refused: $ABS is not empty and has no run.sh, so it is not a data-processor deployment (deploy without --clean, or pick another --path)"
fi
say "preflight ok: $(probe python | cut -d' ' -f2- | sed 's/^/Python /'), rsync, $ABS writable"

# ---- files ------------------------------------------------------------------------------------
# Runtime state and secrets stay on the server: excluded from the transfer and protected from
# --delete. Caches are excluded (and thus also kept on the server) so they never show as changes.
FILTERS=(
    # data/ holds the server's store: never sent, never deleted; only the shipped samples go.
    '+ /data/' '+ /data/samples/***' 'P /data/*' '- /data/*'
    'P /.env' 'P /.venv' 'P /logs' 'P /run'
    '- /.env' '- /.venv' '- /logs' '- /run'
    '- /tests/results' '- /.git' '- /benchmarks/results'
    '- __pycache__' '- *.py[cod]' '- .pytest_cache' '- .ruff_cache' '- .mypy_cache'
    '- /.coverage' '- /.coverage.*' '- /htmlcov' '- .DS_Store' '- *.swp'
)
RSYNC_ARGS=(
    # No -o/-g: files belong to the remote user. --omit-dir-times: run.sh and Python create
    # .venv, data/, __pycache__/ on the server, which changes directory mtimes; syncing those
    # back would show up as a change on every deploy.
    -rlpt --omit-dir-times --itemize-changes --out-format='%i %n%L' -e "$TMP/ssh"
)
for rule in "${FILTERS[@]}"; do RSYNC_ARGS+=(--filter="$rule"); done
((CLEAN)) && RSYNC_ARGS+=(--delete)
((DRY_RUN)) && RSYNC_ARGS+=(--dry-run)

if ! ((DRY_RUN)) && [ "$(probe dir)" = new ]; then
    remote "mkdir -p $REMOTE_PATH" 2>"$TMP/mkdir.err" || die "could not create $ABS: $(last_line "$TMP/mkdir.err")"
fi
DEST="$TARGET:$REMOTE_PATH/"
if ((DRY_RUN)) && [ "$(probe dir)" = new ]; then
    # Nothing there yet: everything would be sent; list it against an empty local directory.
    mkdir "$TMP/empty"
    DEST="$TMP/empty/"
fi
say "syncing files$( ((CLEAN)) && echo ' (--clean: deleting remote files gone locally)')"
if ! rsync "${RSYNC_ARGS[@]}" "$ROOT/" "$DEST" >"$TMP/rsync.out" 2>"$TMP/rsync.err"; then
    cat "$TMP/rsync.err" >&2
    die "rsync to $WHERE failed (see rsync's message above)"
fi
if [ "$DEST" = "$TMP/empty/" ]; then
    # A local copy itemizes files as received (">f"); show them as a push to the server would.
    sed -i 's/^>f/<f/' "$TMP/rsync.out"
fi
# Itemized lines: "<f..." a file sent, "cd..." a directory created, "*deleting" removed,
# ".f..." attributes only.
sent=$(grep -c '^[<>]f' "$TMP/rsync.out" || true)
deleted=$(grep -c '^\*deleting' "$TMP/rsync.out" || true)
changed=$(grep -c . "$TMP/rsync.out" || true)
# A dry run lists every change; a real deploy keeps the log short.
show=$( ((DRY_RUN)) && echo "$changed" || echo 40)
head -n "$show" "$TMP/rsync.out" | sed 's/^/  /'
if [ "$changed" -gt "$show" ]; then
    say "... and $((changed - show)) more (--dry-run lists them all)"
fi

# Pipeline modules gone from the repository go from the server too, with or without --clean:
# discovery imports every *_pipeline.py, so a stale one would stay scheduled. Only those modules
# (other files stay until --clean); setup_cron --all then drops their cron entries. Tables and
# data are never touched.
PRUNE_ARGS=(-rlpt --omit-dir-times --delete --itemize-changes --out-format='%i %n%L' -e "$TMP/ssh"
    --filter='- __pycache__' --filter='- .*' --filter='+ */' --filter='+ *_pipeline.py' --filter='- *')
((DRY_RUN)) && PRUNE_ARGS+=(--dry-run)
: >"$TMP/prune.out"
if [ "$DEST" != "$TMP/empty/" ] && [ -d "$ROOT/src/pipelines" ]; then
    if ! rsync "${PRUNE_ARGS[@]}" "$ROOT/src/pipelines/" "$TARGET:$REMOTE_PATH/src/pipelines/" \
            >"$TMP/prune.out" 2>"$TMP/prune.err"; then
        cat "$TMP/prune.err" >&2
        die "could not remove pipeline modules gone from the repository on $WHERE (see rsync's message above)"
    fi
fi
# "*deleting   x_pipeline.py" (this pass) or "*deleting   src/pipelines/x_pipeline.py" (--clean).
removed_modules=$( { sed -n 's|^\*deleting  *\(.*_pipeline\.py\)$|src/pipelines/\1|p' "$TMP/prune.out"
                    sed -n 's|^\*deleting  *\(src/pipelines/.*_pipeline\.py\)$|\1|p' "$TMP/rsync.out"; } | sort -u)
removed_list=$(printf '%s' "$removed_modules" | paste -sd' ' - | sed 's/ /, /g')
removed_count=$(printf '%s' "$removed_modules" | grep -c . || true)

local_sha="$(sha256sum "$ROOT/requirements.txt" | cut -d' ' -f1)"
if [ "$(probe venv)" != yes ]; then venv_plan=create
elif [ "$(probe stamp)" != "$local_sha" ]; then venv_plan=update
else venv_plan=reuse; fi

if ((DRY_RUN)); then
    say "dry run: nothing was changed on $HOST"
    say "would transfer $sent file(s), delete $deleted, $changed itemized change(s) in all"
    if [ "$(probe env)" != yes ]; then say "would create $ABS/.env from env.example (missing on the server)"; fi
    case "$venv_plan" in
        create) say "would create the virtualenv $ABS/.venv and install requirements.txt" ;;
        update) say "would reinstall requirements.txt into $ABS/.venv (requirements.txt changed)" ;;
        reuse) say "would reuse the virtualenv (requirements.txt unchanged)" ;;
    esac
    if [ "$removed_count" -gt 0 ]; then
        say "would remove $removed_count pipeline module(s) gone from the repository: $removed_list (and their cron entries)"
    fi
    say "would run on the server: ./run.sh setup_db; ./run.sh migrate; ./run.sh setup_cron --all; ./run.sh check"
    exit 0
fi

# ---- server side ------------------------------------------------------------------------------
CD="cd $REMOTE_PATH &&"
for module in $removed_modules; do
    say "removed pipeline module $module (gone from the repository; tables and data stay)"
done
env_status="kept (existing)"
if [ "$(probe env)" != yes ]; then
    if remote "$CD test -f env.example && cp -p env.example .env && chmod 600 .env" 2>"$TMP/env.err"; then
        env_status="created from env.example"
        warn "$ABS/.env did not exist: created it from env.example (the defaults); edit it on the server with your settings, then run ./deploy.sh again or ./run.sh check there"
    else
        die "could not create $ABS/.env from env.example: $(last_line "$TMP/env.err")"
    fi
fi

# run.sh creates or updates .venv itself when requirements.txt changed (stamp file), so the
# first command run on the server is what installs dependencies; 'help' also tells which
# commands this version has.
case "$venv_plan" in
    create) say "creating the remote virtualenv and installing requirements.txt (takes a minute or two)" ;;
    update) say "requirements.txt changed: updating the remote virtualenv" ;;
esac
if ! remote "$CD ./run.sh help" >"$TMP/help.out" 2>"$TMP/help.err"; then
    cat "$TMP/help.err" "$TMP/help.out" >&2
    die "./run.sh could not start on $HOST (output above)"
fi
if grep -q 'Creating virtual environment' "$TMP/help.err"; then venv_status="created"
elif grep -q 'Installing requirements.txt' "$TMP/help.err"; then venv_status="updated (requirements.txt changed)"
else venv_status="reused (requirements.txt unchanged)"; fi

has_command() { grep -Eq "^  $1( |\$)" "$TMP/help.out"; }

# step NAME COMMAND...: run ./run.sh COMMAND on the server; on failure print its output and stop.
step() {
    local name="$1"
    shift
    say "running ./run.sh $* on $HOST"
    if ! remote "$CD ./run.sh $*" >"$TMP/$name.out" 2>&1; then
        sed 's/^/  /' "$TMP/$name.out" >&2
        die "'./run.sh $*' failed on $HOST (output above); the files are deployed, fix the cause and deploy again"
    fi
}

step setup_db setup_db
db_status="$(last_line "$TMP/setup_db.out")"

if has_command migrate; then
    step migrate migrate
    applied=$(grep -c '^Applied ' "$TMP/migrate.out" || true)
    if [ "$applied" -gt 0 ]; then migrate_status="$applied applied"
    else migrate_status="$(last_line "$TMP/migrate.out")"; fi
else
    warn "this version has no 'migrate' command: skipping migrations"
    migrate_status="skipped (no migrate command)"
fi

removed_entries=""
if ! has_command setup_cron; then
    warn "this version has no 'setup_cron' command: skipping cron entries"
    cron_status="skipped (no setup_cron command)"
elif [ "$(probe crontab)" != yes ]; then
    warn "crontab is not installed on $HOST: no cron entries; install cron (Debian/Ubuntu: apt-get install cron) or run './run.sh scheduler' under a process supervisor"
    cron_status="skipped (no crontab on the server)"
else
    step setup_cron setup_cron --all
    cron_status="$(last_line "$TMP/setup_cron.out")"
    removed_entries=$(sed -n 's/^removed \([^ ]*\)$/\1/p' "$TMP/setup_cron.out" | paste -sd' ' - | sed 's/ /, /g')
    [ -z "$removed_entries" ] || say "removed the cron entry of $removed_entries (no longer a scheduled pipeline)"
fi
removed_status=""
if [ -n "$removed_list" ]; then
    if [ "$removed_count" = 1 ]; then removed_status="module $removed_list"
    else removed_status="modules $removed_list"; fi
fi
if [ -n "$removed_entries" ]; then
    case "$removed_entries" in *,*) what="cron entries" ;; *) what="cron entry" ;; esac
    removed_status="${removed_status:+$removed_status; }$what $removed_entries"
fi

say "running ./run.sh check on $HOST"
# check exits 0 when all is well, 3 when the set-up works but the data needs attention (stale data,
# open failures: an old failed day must not make every deploy "unhealthy"), 1 when the set-up is broken.
check_rc=0
remote "$CD ./run.sh check" >"$TMP/check.out" 2>&1 || check_rc=$?
if [ "$check_rc" = 0 ] || [ "$check_rc" = 3 ]; then
    # check's piped output is TSV (name, status, message): count status columns, not the summary's words
    tab=$(printf '\t')
    warnings=$(grep -c "${tab}WARN${tab}" "$TMP/check.out" || true)
    health="healthy"
    if [ "$warnings" -gt 0 ]; then
        health="healthy, $warnings warning(s)"
        grep "${tab}WARN${tab}" "$TMP/check.out" | sed 's/^/  /'
    fi
    if [ "$check_rc" = 3 ]; then
        failing=$(grep -c "${tab}FAIL${tab}" "$TMP/check.out" || true)
        health="$health; the data needs attention ($failing FAIL line(s): stale data or open failures)"
        grep "${tab}FAIL${tab}" "$TMP/check.out" | sed 's/^/  /'
    fi
else
    cat "$TMP/check.out" >&2
    die "deployed, but ./run.sh check reports $HOST unhealthy (output above): fix the FAIL lines and deploy again"
fi

say "done: $WHERE in $((SECONDS - STARTED)) s"
printf '  files:      %s transferred, %s deleted, %s itemized change(s)\n' "$sent" "$deleted" "$changed"
printf '  .env:       %s\n' "$env_status"
printf '  venv:       %s\n' "$venv_status"
printf '  database:   %s\n' "$db_status"
printf '  migrations: %s\n' "$migrate_status"
printf '  cron:       %s\n' "$cron_status"
printf '  removed:    %s\n' "${removed_status:-nothing}"
printf '  health:     %s\n' "$health"
