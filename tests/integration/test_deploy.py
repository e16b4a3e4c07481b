"""deploy.sh against a real sshd on a loopback port: the "server" is this machine, as this user.

A module-scoped sshd (generated host and client keys, its own config) and one first deploy of a
copy of the project into a temporary directory; the tests then redeploy into it. The first deploy
builds the remote virtualenv from requirements.txt (about a minute from the local package cache);
every later deploy must reuse it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import ROOT, private_crontab, project_copy, python310, require_tool, run_cli

# Executables standing in for python3 on the second sshd port (a host whose python is too old or
# missing), chosen per connection by DP_FAKE_PYTHON (sent with ssh's SetEnv).
FAKE_PYTHON = textwrap.dedent("""\
    #!/bin/sh
    [ "${DP_FAKE_PYTHON:-}" = py310 ] && [ -n "__PY310__" ] && exec "__PY310__" "$@"
    [ "${DP_FAKE_PYTHON:-}" = old ] || exit 127
    case "$*" in
        *sys.exit*) exit 1 ;;
        *) echo 3.8.10 ;;
    esac
""")

# A scheduled pipeline shipped with the deployed copy, so that setup_cron has an entry to write.
PROBE_PIPELINE = textwrap.dedent('''\
    import os

    import pyarrow as pa

    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.loaders.console_loader import create_console_loader


    class One(Extractor):
        def extract(self, context):
            if os.environ.get("PROBE_FAIL"):
                raise RuntimeError("the probe was told to fail")
            yield pa.table({"n": [1]})


    PIPELINE_REGISTRY = {
        "deploy_probe": {"pipeline": create_el_pipeline(One(), create_console_loader(), "deploy_probe"),
                         "description": "written by test_deploy", "schedule": "17 3 * * *"},
    }
''')

# The first deploy (in the fixture, so inside whichever test comes first) pip-installs the venv:
# about a minute, several on a busy machine; pytest-timeout counts fixture setup too.
pytestmark = [pytest.mark.timeout(900), pytest.mark.same_in_both_runs(
    "the deployed copy runs on the target with its own settings (its embedded store), not the suite's server")]

RUNTIME = {"data", "logs", "run"}  # state the server writes itself: not part of "the tree"


def free_ports(count: int = 1) -> list[int]:
    """Loopback ports nobody listens on (held open together, so they are distinct)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class Server:
    port: int
    fake_port: int  # same sshd, but python3 is replaced by FAKE_PYTHON
    key: Path
    ssh_config: Path
    log: Path
    crontab: Path  # the server's crontab: a private one (sshd sets CRONTAB_COMMAND), never the user's
    user: str = field(default_factory=lambda: os.environ.get("USER") or subprocess.run(
        ["id", "-un"], capture_output=True, text=True, check=True).stdout.strip())

    def ssh(self, command: str, port: int | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command on the "server" the way deploy.sh does (clean login environment)."""
        return subprocess.run(
            ["ssh", "-F", str(self.ssh_config), "-i", str(self.key), "-p", str(port or self.port),
             f"{self.user}@127.0.0.1", command],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    sshd = require_tool("sshd")
    require_tool("ssh")
    require_tool("ssh-keygen")
    require_tool("rsync")
    base = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / name)], check=True)
    (base / "authorized_keys").write_text((base / "client_key.pub").read_text())
    fake_bin = base / "fake-bin"
    fake_bin.mkdir()
    for name in ("python3", "python3.10", "python3.11", "python3.12", "python3.13"):
        (fake_bin / name).write_text(FAKE_PYTHON.replace("__PY310__", python310() or ""))
        (fake_bin / name).chmod(0o755)
    port, fake_port = free_ports(2)
    crontab = private_crontab(base / "private-crontab")
    config = base / "sshd_config"
    config.write_text(textwrap.dedent(f"""\
        ListenAddress 127.0.0.1:{port}
        ListenAddress 127.0.0.1:{fake_port}
        HostKey {base / 'host_key'}
        AuthorizedKeysFile {base / 'authorized_keys'}
        PidFile {base / 'sshd.pid'}
        StrictModes no
        UsePAM no
        PubkeyAuthentication yes
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        PermitRootLogin prohibit-password
        AcceptEnv DP_FAKE_PYTHON
        SetEnv CRONTAB_COMMAND={crontab}
        LogLevel ERROR
        Match LocalPort {fake_port}
            ForceCommand PATH={fake_bin}:$PATH; export PATH; eval "$SSH_ORIGINAL_COMMAND"
    """))
    if os.geteuid() == 0:
        # sshd running as root wants its privilege separation directory (made by the service unit).
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    ssh_config = base / "ssh_config"
    ssh_config.write_text("StrictHostKeyChecking no\nUserKnownHostsFile /dev/null\nLogLevel ERROR\n")
    log = base / "sshd.log"
    with log.open("w") as log_file:
        process = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=log_file, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    srv = Server(port, fake_port, base / "client_key", ssh_config, log, crontab)
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                pytest.fail(f"sshd exited with {process.returncode}: {log.read_text()}")
            if srv.ssh("true").returncode == 0:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"sshd on port {port} did not accept the test key: {log.read_text()}")
            time.sleep(0.1)
        yield srv
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean copy of the project as git sees it (tracked and new files, nothing ignored)."""
    target = tmp_path_factory.mktemp("checkout") / "data-processor"
    project_copy(target)
    (target / "src" / "pipelines" / "deploy_probe_pipeline.py").write_text(PROBE_PIPELINE)
    return target


@pytest.fixture(scope="module")
def commands() -> str:
    """``./run.sh help`` of this version: which of migrate / setup_cron exist."""
    result = run_cli("help")
    assert result.returncode == 0, result.stderr
    return result.stdout


def deploy(server: Server, source: Path, remote: Path, *args: str, port: int | None = None,
           env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ)
    full_env["SSH_OPTS"] = f"-F {server.ssh_config}"
    full_env.update(env or {})
    return subprocess.run(
        [str(source / "deploy.sh"), server.user, "127.0.0.1", "--port", str(port or server.port),
         "--identity", str(server.key), "--path", str(remote), *args],
        capture_output=True, text=True, timeout=timeout, env=full_env, stdin=subprocess.DEVNULL,
    )


def tree(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` but runtime state: type, mode, size, mtime and content hash."""
    listing: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] in RUNTIME:
            continue
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else ""
        listing[str(rel)] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return listing


def summary(output: str) -> dict[str, str]:
    """The deploy's closing summary lines as {label: value}."""
    lines = output.split("[deploy] done:", 1)[1].splitlines()[1:]
    return {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in lines if ":" in line}


@dataclass
class Deployment:
    remote: Path
    first: subprocess.CompletedProcess[str]
    seconds: float
    local_env: dict[str, str]


@pytest.fixture(scope="module")
def deployed(server: Server, source: Path, tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    """The first deploy into a fresh directory (builds the remote venv once for the module)."""
    base = tmp_path_factory.mktemp("remote")
    remote = base / "srv" / "data-processor"  # parents missing too: deploy creates them
    # Variables a developer (or the test suite) has locally must not reach the server's run.sh.
    local = {"DATA_DIR": str(base / "local-data"), "LOG_DIR": str(base / "local-logs"),
             "RUN_DIR": str(base / "local-run"), "ENV_FILE": str(base / "local.env")}
    started = time.monotonic()
    result = deploy(server, source, remote, env=local)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    return Deployment(remote, result, seconds, local)


# ---- first deploy -------------------------------------------------------------------------------

@pytest.mark.slow
def test_first_deploy_ships_files_creates_env_venv_and_database(deployed: Deployment, source: Path,
                                                               server: Server) -> None:
    remote, out = deployed.remote, deployed.first.stdout
    for name in ("run.sh", "deploy.sh", "requirements.txt", "src/main.py", "env.example",
                 "src/pipelines/deploy_probe_pipeline.py", "data/samples/orders_day.csv"):
        assert (remote / name).read_bytes() == (source / name).read_bytes(), name
    assert os.access(remote / "run.sh", os.X_OK)
    # Nothing local-only or runtime was shipped.
    assert not (remote / ".git").exists() and not (remote / "tests" / "results").exists()
    # .env created from env.example, with a warning.
    assert (remote / ".env").read_text() == (source / "env.example").read_text()
    assert f"warning: {remote}/.env did not exist: created it from env.example" in deployed.first.stderr
    # The venv was built by run.sh's bootstrap, stamped with requirements.txt's hash.
    assert (remote / ".venv" / "bin" / "python").exists()
    assert (remote / ".venv" / ".requirements.sha256").read_text().strip() == \
        hashlib.sha256((source / "requirements.txt").read_bytes()).hexdigest()
    facts = summary(out)
    assert facts["venv"] == "created"
    shipped = [p for p in source.rglob("*") if p.is_file()]
    assert facts["files"].startswith(f"{len(shipped)} transferred, 0 deleted")
    # The database lives in the remote directory's own data/, not in the caller's DATA_DIR.
    assert facts["database"] == f"Created 'data_warehouse' in embedded chdb://{remote}/data/clickhouse"
    assert (remote / "data" / "clickhouse").is_dir()
    assert not Path(deployed.local_env["DATA_DIR"]).exists()
    assert facts["health"].startswith("healthy")
    check = server.ssh(f"cd {remote} && ./run.sh check")
    assert check.returncode == 0, check.stdout + check.stderr
    print(f"first deploy took {deployed.seconds:.1f} s")


@pytest.mark.slow
def test_first_deploy_applies_migrations(deployed: Deployment, source: Path, commands: str, server: Server) -> None:
    facts = summary(deployed.first.stdout)
    if "migrate" not in commands.split():
        assert facts["migrations"] == "skipped (no migrate command)"
        assert "warning: this version has no 'migrate' command: skipping migrations" in deployed.first.stderr
        return
    shipped = [p for p in (source / "migrations" / "sql").glob("*.sql") if not p.name.endswith(".down.sql")]
    assert shipped, "the project ships an example migration"
    assert facts["migrations"] == f"{len(shipped)} applied"
    status = server.ssh(f"cd {deployed.remote} && ./run.sh migrate_status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "up to date" in status.stdout


@pytest.mark.slow
def test_first_deploy_installs_cron_block(deployed: Deployment, commands: str, server: Server) -> None:
    facts = summary(deployed.first.stdout)
    if "setup_cron" not in commands.split():
        assert facts["cron"] == "skipped (no setup_cron command)"
        assert "warning: this version has no 'setup_cron' command" in deployed.first.stderr
        return
    crontab = subprocess.run([server.crontab, "-l"], capture_output=True, text=True, check=True).stdout
    block = crontab.split(f"# BEGIN data-processor {deployed.remote}", 1)[1].split("# END", 1)[0]
    assert "cron_run deploy_probe" in block
    assert str(deployed.remote) in block


# ---- redeploys ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_second_deploy_is_a_no_op(deployed: Deployment, server: Server, source: Path) -> None:
    before = tree(deployed.remote)
    started = time.monotonic()
    result = deploy(server, source, deployed.remote)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    facts = summary(result.stdout)
    assert facts["files"] == "0 transferred, 0 deleted, 0 itemized change(s)"
    assert facts["venv"] == "reused (requirements.txt unchanged)"
    assert facts[".env"] == "kept (existing)"
    assert facts["health"].startswith("healthy")
    assert "did not exist" not in result.stderr
    assert tree(deployed.remote) == before
    print(f"second deploy took {seconds:.1f} s")


@pytest.mark.slow
def test_an_open_failure_on_the_host_is_no_unhealthy_deploy(deployed: Deployment, server: Server,
                                                           source: Path) -> None:
    """check exits 3 for data that needs attention (an old failed run): the deploy is healthy and
    says so; only a broken set-up (exit 1) fails it (issue 25 §2)."""
    remote = deployed.remote
    failed = server.ssh(f"cd {remote} && PROBE_FAIL=1 ./run.sh cron_run deploy_probe")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    try:
        result = deploy(server, source, remote)
        assert result.returncode == 0, result.stdout + result.stderr
        health = summary(result.stdout)["health"]
        assert health.startswith("healthy") and "the data needs attention (1 FAIL line(s)" in health, health
        assert "open:deploy_probe" in result.stdout
    finally:
        healed = server.ssh(f"cd {remote} && ./run.sh cron_run deploy_probe")
        assert healed.returncode == 0, healed.stdout + healed.stderr


@pytest.mark.slow
def test_dry_run_lists_changes_and_changes_nothing(deployed: Deployment, server: Server, source: Path,
                                                   tmp_path: Path) -> None:
    new_file = source / "docs" / "dry-run-probe.md"
    new_file.parent.mkdir(exist_ok=True)
    new_file.write_text("only local\n")
    try:
        before = tree(deployed.remote)
        result = deploy(server, source, deployed.remote, "--dry-run")
    finally:
        new_file.unlink()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<f+++++++++ docs/dry-run-probe.md" in result.stdout
    assert "would transfer 1 file(s), delete 0" in result.stdout
    assert "would reuse the virtualenv" in result.stdout
    assert tree(deployed.remote) == before
    # A fresh target: everything would be sent, the directory is not even created.
    fresh = tmp_path / "never-created"
    result = deploy(server, source, fresh, "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<f+++++++++ run.sh" in result.stdout
    assert "would create the virtualenv" in result.stdout
    assert f"would create {fresh}/.env from env.example" in result.stdout
    assert not fresh.exists()


@pytest.mark.slow
def test_clean_removes_stale_files_but_keeps_env_data_logs(deployed: Deployment, server: Server,
                                                           source: Path) -> None:
    remote = deployed.remote
    (remote / "src" / "old_module.py").write_text("# removed from the project\n")
    (remote / "stale.txt").write_text("stale\n")
    env_text = (remote / ".env").read_text() + "API_KEY=kept-on-the-server\n"
    (remote / ".env").write_text(env_text)
    for name in ("data/keep.txt", "logs/keep.log", "run/keep.pid"):
        (remote / name).parent.mkdir(exist_ok=True)
        (remote / name).write_text("keep\n")

    # Without --clean nothing is deleted, and the edited .env stays.
    result = deploy(server, source, remote)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (remote / "stale.txt").exists() and (remote / "src" / "old_module.py").exists()
    assert (remote / ".env").read_text() == env_text

    result = deploy(server, source, remote, "--clean")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "*deleting   stale.txt" in result.stdout
    assert "*deleting   src/old_module.py" in result.stdout
    assert summary(result.stdout)["files"] == "0 transferred, 2 deleted, 2 itemized change(s)"
    assert not (remote / "stale.txt").exists() and not (remote / "src" / "old_module.py").exists()
    assert (remote / ".env").read_text() == env_text
    for name in ("data/keep.txt", "logs/keep.log", "run/keep.pid", ".venv/bin/python", "data/clickhouse"):
        assert (remote / name).exists(), name
    assert summary(result.stdout)["venv"] == "reused (requirements.txt unchanged)"


@pytest.mark.slow
def test_a_pipeline_removed_locally_leaves_the_server_with_its_cron_entry(deployed: Deployment, server: Server,
                                                                        source: Path, commands: str) -> None:
    remote = deployed.remote
    module = source / "src" / "pipelines" / "retired_pipeline.py"
    module.write_text(PROBE_PIPELINE.replace("deploy_probe", "retired_probe").replace("17 3 * * *", "19 4 * * *"))
    try:
        result = deploy(server, source, remote)
    finally:
        module.unlink()
    assert result.returncode == 0, result.stdout + result.stderr
    assert (remote / "src" / "pipelines" / "retired_pipeline.py").exists()
    assert summary(result.stdout)["removed"] == "nothing"

    def block() -> str:
        crontab = subprocess.run([server.crontab, "-l"], capture_output=True, text=True, check=True).stdout
        return crontab.split(f"# BEGIN data-processor {remote}", 1)[1].split("# END", 1)[0]

    if "setup_cron" in commands.split():
        assert "cron_run retired_probe" in block()
    helper = remote / "src" / "pipelines" / "server_helper.py"  # not a pipeline module: stays without --clean
    helper.write_text("# the server's own helper\n")

    dry = deploy(server, source, remote, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert ("would remove 1 pipeline module(s) gone from the repository: src/pipelines/retired_pipeline.py "
            "(and their cron entries)") in dry.stdout
    assert (remote / "src" / "pipelines" / "retired_pipeline.py").exists()

    result = deploy(server, source, remote)  # no --clean
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (remote / "src" / "pipelines" / "retired_pipeline.py").exists()
    assert helper.exists() and (remote / "src" / "pipelines" / "deploy_probe_pipeline.py").exists()
    assert ("[deploy] removed pipeline module src/pipelines/retired_pipeline.py (gone from the repository; "
            "tables and data stay)") in result.stdout
    facts = summary(result.stdout)
    if "setup_cron" in commands.split():
        assert "cron_run retired_probe" not in block() and "cron_run deploy_probe" in block()
        assert facts["removed"] == "module src/pipelines/retired_pipeline.py; cron entry retired_probe"
    assert facts["health"].startswith("healthy")
    assert (remote / "data" / "clickhouse").is_dir()
    again = deploy(server, source, remote)
    assert again.returncode == 0 and summary(again.stdout)["removed"] == "nothing"
    helper.unlink()


# ---- early failures -----------------------------------------------------------------------------

@pytest.mark.slow
def test_no_ssh_access_fails_early(server: Server, source: Path, tmp_path: Path) -> None:
    port = free_ports()[0]  # nothing listens there
    result = deploy(server, source, tmp_path / "app", port=port)
    assert result.returncode == 1
    assert (f"[deploy] error: cannot log in to {server.user}@127.0.0.1 over SSH (port {port}): "
            f"ssh: connect to host 127.0.0.1 port {port}: Connection refused") in result.stderr
    assert not (tmp_path / "app").exists()


@pytest.mark.slow
def test_unwritable_remote_path_fails_early(server: Server, source: Path, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory\n")
    target = tmp_path / "a-file" / "app"
    result = deploy(server, source, target)
    assert result.returncode == 1
    assert (f"[deploy] error: remote directory {target} is not writable: "
            f"{tmp_path / 'a-file'} is not a directory") in result.stderr
    assert "syncing files" not in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "message"), [
    ("old", "remote python3 is too old (python3 3.8.10); data-processor needs Python 3.11 or newer on 127.0.0.1: "
            "install one with uv (uv python install 3.12), pyenv (pyenv install 3.12) or, on Debian/Ubuntu, the "
            "deadsnakes PPA"),
    ("py310", "remote python3 is too old (python3 3.10."),
    ("missing", "python3 is not installed on 127.0.0.1 (Python 3.11 or newer is needed): install one with uv"),
])
def test_remote_python_missing_or_too_old_fails_early(server: Server, source: Path, tmp_path: Path,
                                                       mode: str, message: str) -> None:
    if mode == "py310" and python310() is None:
        pytest.skip("no Python 3.10 interpreter here (pyenv versions, python3.10) to test the refusal with")
    result = deploy(server, source, tmp_path / "app", port=server.fake_port,
                    env={"SSH_OPTS": f"-F {server.ssh_config} -o SetEnv=DP_FAKE_PYTHON={mode}"})
    assert result.returncode == 1
    assert f"[deploy] error: {message}" in result.stderr
    assert not (tmp_path / "app").exists()


@pytest.mark.slow
def test_rsync_missing_locally_fails_early(server: Server, source: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "ssh"):  # what deploy.sh needs before it looks for rsync
        (bin_dir / tool).symlink_to(shutil.which(tool))
    result = deploy(server, source, tmp_path / "app", env={"PATH": str(bin_dir)})
    assert result.returncode == 1
    assert "[deploy] error: rsync is not installed locally (Debian/Ubuntu: apt-get install rsync)" in result.stderr


@pytest.mark.slow
def test_clean_refuses_a_foreign_directory(server: Server, source: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("someone else's files\n")
    result = deploy(server, source, tmp_path, "--clean")
    assert result.returncode == 1
    assert "--clean refused" in result.stderr and "has no run.sh" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_bad_arguments_are_usage_errors() -> None:
    for args, message in ((["root"], "expected USER and HOST, got 1 argument(s)"),
                          (["root", "h", "--port", "99999"], "--port must be a number from 1 to 65535"),
                          (["root", "h", "--path", "a b"], "use only letters, digits"),
                          (["root", "h", "--frobnicate"], "unknown option '--frobnicate'")):
        result = subprocess.run([str(ROOT / "deploy.sh"), *args], capture_output=True, text=True, timeout=30)
        assert result.returncode == 2, args
        assert message in result.stderr, (args, result.stderr)
