"""Alerts with real receivers: an HTTP server and an SMTP server on 127.0.0.1, runs as CLI processes."""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from conftest import SRC, JsonHandler, cli_env, require_tool, rows, run_cli, serve, wait_for
from core.store import Store

TOKEN = "T0KEN-s3cret-path"

MODULE = textwrap.dedent('''
    import os
    import time
    from datetime import timedelta
    import pyarrow as pa
    from audit import in_range
    from pipelines.interfaces import Extractor
    from pipelines.pipeline_factory import create_el_pipeline
    from pipelines.tools.loaders.clickhouse_loader import create_clickhouse_loader

    class Feed(Extractor):
        interval_aware = True
        def extract(self, context):
            if os.environ.get("FAIL"):
                raise RuntimeError("source is down")
            if os.environ.get("SLOW"):
                time.sleep(60)
            ids = [1, 1000] if os.environ.get("BAD_ID") else [1, 2]
            ts = [context.start + timedelta(hours=h) for h in range(len(ids))]
            yield pa.table({"ts": pa.array(ts, pa.timestamp("ms", tz="UTC")), "id": pa.array(ids, pa.int64())})

    def feed(table):
        return create_el_pipeline(Feed(), create_clickhouse_loader(table, time_column="ts"), table)

    PIPELINE_REGISTRY = {
        "feed": {"pipeline": feed("feed_t"), "schedule": "0 * * * *", "checks": [in_range("id", max=100)]},
        "quiet": {"pipeline": feed("quiet_t"), "alerts": {"enabled": False}},
        "watched": {"pipeline": feed("watched_t"), "checks": [in_range("id", max=100, severity="warn")],
                    "alerts": {"on_warn": True}},
        "own": {"pipeline": feed("own_t"),
                "alerts": {"webhook_url": os.environ.get("OWN_WEBHOOK", "http://127.0.0.1:9/none"),
                           "webhook_format": "slack"}},
    }
''')


class Receiver:
    """What a webhook endpoint received, and how it answers (status, delay)."""

    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        self.status, self.delay = status, delay
        self.posts: list[dict] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.posts.append(body)
                receiver.paths.append(self.path)
                time.sleep(receiver.delay)
                with contextlib.suppress(OSError):  # the client may have given up (timeout)
                    self.send_json({"ok": receiver.status < 300}, receiver.status)

        self.handler = Handler


@contextmanager
def webhook(status: int = 200, delay: float = 0.0) -> Iterator[tuple[Receiver, str]]:
    receiver = Receiver(status, delay)
    with serve(receiver.handler) as base:
        yield receiver, f"{base}/hooks/{TOKEN}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[str] = []
        self.logins: list[tuple[str, str]] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802  (aiosmtpd's hook name)
        self.messages.append(envelope.content.decode("utf8", "replace"))
        return "250 OK"


@contextmanager
def smtp_server(**options) -> Iterator[tuple[Mailbox, int]]:
    from aiosmtpd.controller import Controller

    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


@pytest.fixture
def project(pipelines_dir: Path, project_env: dict[str, str]) -> dict[str, str]:
    (pipelines_dir / "feed_pipeline.py").write_text(MODULE)
    return project_env


def cron_run(name: str = "feed", day: str = "2026-03-10", timeout: float = 60, **env: str):
    return run_cli("cron_run", name, "--date", day, env=env, timeout=timeout)


def kinds(receiver: Receiver) -> list[str]:
    return [p["kind"] for p in receiver.posts]


def test_n_failures_alert_once_then_one_recovery(project) -> None:
    with webhook() as (receiver, url):
        env = {"ALERT_WEBHOOK_URL": url}
        for _ in range(3):
            assert cron_run(FAIL="1", **env).returncode == 1
        assert kinds(receiver) == ["run_failed"]
        assert receiver.posts[0]["pipeline"] == "feed" and "source is down" in receiver.posts[0]["summary"]
        assert cron_run(**env).returncode == 0
        assert cron_run(**env).returncode == 0
        assert kinds(receiver) == ["run_failed", "recovered"]
        # A failing data check is an alert of its own kind, under the same condition.
        assert cron_run(BAD_ID="1", **env).returncode == 1
        assert kinds(receiver)[-1] == "check_failed" and "range(id): 1 failing row(s)" in receiver.posts[-1]["summary"]


def test_a_crashed_run_alerts_when_detected_then_recovers(project) -> None:
    import signal

    from conftest import wait_for

    with webhook() as (receiver, url):
        env = cli_env({"ALERT_WEBHOOK_URL": url, "SLOW": "1"})
        victim = subprocess.Popen([sys.executable, str(SRC / "main.py"), "cron_run", "feed", "--date", "2026-03-10"],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pids = Path(project["RUN_DIR"]) / "pids"
        wait_for(lambda: pids.is_dir() and list(pids.glob("*.json")), what="the run's pid file")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        run_cli("check", "--alert", "--quiet", env={"ALERT_WEBHOOK_URL": url})  # the cron entry finds it
        assert kinds(receiver) == ["run_crashed"]
        assert cron_run("feed", day="2026-03-11", ALERT_WEBHOOK_URL=url).returncode == 0
        run_cli("check", "--alert", "--quiet", env={"ALERT_WEBHOOK_URL": url})
        # A later day loaded is no recovery: the crashed day is still open (and the data is old: stale).
        assert kinds(receiver) == ["run_crashed", "stale"]
        assert cron_run("feed", day="2026-03-10", ALERT_WEBHOOK_URL=url).returncode == 0
    assert kinds(receiver) == ["run_crashed", "stale", "recovered"]
    assert "ended without recording an outcome" in receiver.posts[0]["summary"]
    assert receiver.posts[2]["interval"] == "2026-03-10" and "no open failures left" in receiver.posts[2]["summary"]


def test_email_over_smtp_alerts_once_and_on_recovery(project) -> None:
    with smtp_server() as (box, port):
        env = {"ALERT_SMTP_HOST": "127.0.0.1", "ALERT_SMTP_PORT": str(port), "ALERT_SMTP_SECURITY": "none",
               "ALERT_EMAIL_TO": "oncall@example.com, data@example.com", "ALERT_EMAIL_FROM": "dp@example.com"}
        for _ in range(3):
            assert cron_run(FAIL="1", **env).returncode == 1
        assert cron_run(**env).returncode == 0
    assert len(box.messages) == 2
    assert "Subject: [data-processor] Run failed: feed" in box.messages[0]
    assert "To: oncall@example.com, data@example.com" in box.messages[0]
    assert "Subject: [data-processor] Recovered: feed" in box.messages[1]
    # What mail clients and spam filters expect: a Date and a unique Message-ID.
    mails = [email.message_from_string(m, policy=email.policy.default) for m in box.messages]
    for mail in mails:
        assert abs(parsedate_to_datetime(mail["Date"]) - datetime.now(UTC)) < timedelta(minutes=10)
        message_id = mail["Message-ID"].strip()  # a long one is folded onto its own line (RFC 5322)
        assert message_id.startswith("<") and message_id.endswith("@example.com>")
    assert mails[0]["Message-ID"] != mails[1]["Message-ID"]


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    openssl = require_tool("openssl")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return key, cert


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_email_over_tls_with_login_and_the_password_masked(project, tmp_path: Path, security: str) -> None:
    import ssl

    from aiosmtpd.smtp import AuthResult

    key, cert = _certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    logins: list[tuple[str, str]] = []

    def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
        logins.append((auth_data.login.decode(), auth_data.password.decode()))
        return AuthResult(success=True)

    # With implicit TLS aiosmtpd does not know the session is encrypted, so it is told not to insist.
    options = {"tls_context": context, "require_starttls": True} if security == "starttls" else \
        {"ssl_context": context, "auth_require_tls": False}
    with smtp_server(authenticator=authenticator, auth_required=True, **options) as (box, port):
        env = {"ALERT_SMTP_HOST": "127.0.0.1", "ALERT_SMTP_PORT": str(port), "ALERT_SMTP_SECURITY": security,
               "ALERT_SMTP_USER": "alerts", "ALERT_SMTP_PASSWORD": "sm7p-pa55word", "ALERT_SMTP_CA_FILE": str(cert),
               "ALERT_EMAIL_TO": "oncall@example.com"}
        sent = run_cli("alert_test", "email", env=env)
        assert sent.returncode == 0, sent.stderr
        assert f"sent email to oncall@example.com via 127.0.0.1:{port} ({security})" in sent.stdout
        shown = run_cli("check", env=env).stdout
    assert logins == [("alerts", "sm7p-pa55word")] and len(box.messages) == 1
    assert "Test alert" in box.messages[0]
    assert "sm7p-pa55word" not in shown and "ALERT_SMTP_PASSWORD" in shown


def test_a_failing_or_hanging_channel_never_fails_the_run(project, db: Store) -> None:
    with webhook(status=500) as (broken, url):
        done = cron_run(ALERT_WEBHOOK_URL=url)
        assert done.returncode == 0 and kinds(broken) == []  # success with nothing firing: nothing to say
        failed = cron_run(FAIL="1", ALERT_WEBHOOK_URL=url)
        assert failed.returncode == 1 and "source is down" in failed.stderr  # the run's own outcome, unchanged
        assert kinds(broken) == ["run_failed"]
    with webhook(delay=60) as (hanging, url):
        # ALERT_TIMEOUT bounds the wait: the process ends long before the receiver would answer.
        done = cron_run(ALERT_WEBHOOK_URL=url, ALERT_TIMEOUT="1", timeout=30)
        assert done.returncode == 0 and kinds(hanging) == ["recovered"]
    log = rows(db, "SELECT event, ok, error, channel FROM _dp_alert_log ORDER BY sent_at")
    assert [(e, ok) for e, ok, _, _ in log] == [("run_failed", 0), ("recovered", 0)]
    assert "HTTP 500" in log[0][2] and "ReadTimeout" in log[1][2]
    assert all(TOKEN not in channel and "/***" in channel for *_, channel in log)
    job_log = (Path(db.settings.log_dir) / "jobs" / "feed.log").read_text()
    assert "not delivered" in job_log and TOKEN not in job_log
    statuses = rows(db, "SELECT status FROM _dp_runs FINAL WHERE pipeline = 'feed' ORDER BY started_at")
    assert statuses == [("success",), ("failed",), ("success",)]


def test_formats_overrides_and_turning_alerts_off(project) -> None:
    with webhook() as (teams, teams_url), webhook() as (own, own_url):
        env = {"ALERT_WEBHOOK_URL": teams_url, "ALERT_WEBHOOK_FORMAT": "teams", "OWN_WEBHOOK": own_url}
        assert cron_run("quiet", FAIL="1", **env).returncode == 1
        assert cron_run("own", FAIL="1", **env).returncode == 1
        assert cron_run("feed", FAIL="1", **env).returncode == 1
    assert own.posts == [{"text": own.posts[0]["text"]}] and own.posts[0]["text"].startswith(
        "[data-processor] Run failed: own\nfailed (error): RuntimeError: source is down")
    [card] = teams.posts
    assert card["type"] == "message"
    attachment = card["attachments"][0]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["content"]["type"] == "AdaptiveCard"
    assert attachment["content"]["body"][0]["text"] == "[data-processor] Run failed: feed"


def test_warn_checks_alert_when_configured(project) -> None:
    with webhook() as (receiver, url):
        for bad in ("1", "1", ""):
            assert cron_run("watched", BAD_ID=bad, ALERT_WEBHOOK_URL=url).returncode == 0  # warn: published
        assert cron_run("feed", ALERT_WEBHOOK_URL=url).returncode == 0  # on_warn is off by default
    assert kinds(receiver) == ["check_warned", "recovered"]
    assert receiver.posts[0]["summary"] == "check range(id): 1 failing row(s)"
    assert receiver.posts[1]["summary"] == "check range(id) passes again"


def test_command_channel_gets_the_event_on_stdin(project, tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    script = tmp_path / "notify.py"
    script.write_text(f"import sys\nopen({str(out)!r}, 'a').write(sys.stdin.read() + '\\n')\n")
    assert cron_run(FAIL="1", ALERT_COMMAND=f"{sys.executable} {script}").returncode == 1
    [event] = [json.loads(line) for line in out.read_text().splitlines()]
    assert (event["kind"], event["pipeline"], event["interval"]) == ("run_failed", "feed", "2026-03-10")
    assert event["run_id"] and event["title"] == "[data-processor] Run failed: feed"


def test_a_reminder_after_the_configured_time(project) -> None:
    with webhook() as (receiver, url):
        env = {"ALERT_WEBHOOK_URL": url, "ALERT_REMIND_HOURS": "0.0003"}  # about a second
        assert cron_run(FAIL="1", **env).returncode == 1
        time.sleep(1.5)
        assert cron_run(FAIL="1", **env).returncode == 1
        assert cron_run(FAIL="1", ALERT_WEBHOOK_URL=url).returncode == 1  # default: 24 h, so no reminder yet
    assert kinds(receiver) == ["run_failed", "run_failed"]
    assert receiver.posts[1]["summary"].startswith("still failing: ") and receiver.posts[1]["details"]["reminder"]


def test_concurrent_failures_send_one_alert(project) -> None:
    with webhook() as (receiver, url):
        env = cli_env({"ALERT_WEBHOOK_URL": url, "FAIL": "1"})
        processes = [subprocess.Popen([sys.executable, str(SRC / "main.py"), "cron_run", "feed", "--date", day],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for day in ("2026-03-10", "2026-03-11", "2026-03-12")]
        codes = [p.wait(timeout=120) for p in processes]
        for p in processes:
            p.communicate()
    assert codes == [1, 1, 1] and kinds(receiver) == ["run_failed"]


def test_a_backfill_sends_one_summary(project) -> None:
    with webhook() as (receiver, url):
        result = run_cli("backfill", "3", "feed", "--continue-on-error", env={"ALERT_WEBHOOK_URL": url, "FAIL": "1"},
                         timeout=120)
        assert result.returncode == 1
    assert kinds(receiver) == ["backfill_failed"]
    assert receiver.posts[0]["summary"].startswith("3 interval(s) failed, 3 ran:")
    assert receiver.posts[0]["summary"].count("source is down") == 3


def test_check_alert_on_stale_data_once(project, db: Store) -> None:
    from core.models import RunRecord
    from record.coverage import record_coverage
    from record.history import record_run
    from record.tables import ensure_framework_tables

    db.create_database()
    ensure_framework_tables(db)
    old = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
    loaded = RunRecord(run_id="old", pipeline="feed", interval_start=old - timedelta(days=1), interval_end=old,
                       trigger="cron", status="success", started_at=old, rows_loaded=5)
    record_run(db, loaded)
    record_coverage(db, loaded)
    db.close()
    with webhook() as (receiver, url):
        for _ in range(2):
            checked = run_cli("check", "--alert", "--quiet", env={"ALERT_WEBHOOK_URL": url})
            # Only the data needs attention: exit 3, not 1 (a broken set-up).
            assert checked.returncode == 3 and f"FAIL fresh:feed: stale: data loaded up to {old:%Y-%m-%d %H:%M} UTC" \
                in checked.stdout
    assert kinds(receiver) == ["stale"] and receiver.posts[0]["pipeline"] == "feed"


def test_alert_test_reports_each_channel(project) -> None:
    nothing = run_cli("alert_test")
    assert nothing.returncode == 1 and "error: no alert channel is configured: set ALERT_WEBHOOK_URL" in nothing.stderr
    assert "the email channel is not configured" in run_cli("alert_test", "email").stderr
    with webhook() as (receiver, url):
        sent = run_cli("alert_test", env={"ALERT_WEBHOOK_URL": url})
        assert sent.returncode == 0 and f"sent webhook {url.split('/hooks')[0]}/*** (json)" in sent.stdout
        assert TOKEN not in sent.stdout + sent.stderr
        shown = run_cli("check", env={"ALERT_WEBHOOK_URL": url}).stdout
        assert "ALERT_WEBHOOK_URL" in shown and f"{url.split('/hooks')[0]}/***" in shown and TOKEN not in shown
    assert kinds(receiver) == ["test"] and receiver.paths == [f"/hooks/{TOKEN}"]
    with webhook(status=500) as (_, url):
        failed = run_cli("alert_test", "webhook", env={"ALERT_WEBHOOK_URL": url})
        assert failed.returncode == 1 and "HTTP 500" in failed.stderr and TOKEN not in failed.stderr


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_hanging_alert_command_is_ended_with_its_children(project, tmp_path: Path) -> None:
    child = tmp_path / "child.pid"
    script = tmp_path / "hang.sh"
    script.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {child}\nwait\n")
    started = time.monotonic()
    hung = run_cli("alert_test", "command", env={"ALERT_COMMAND": f"/bin/sh {script}", "ALERT_TIMEOUT": "1"},
                   timeout=60)
    assert hung.returncode == 1 and "TimeoutExpired" in hung.stderr
    assert time.monotonic() - started < 30
    pid = int(child.read_text())
    try:
        wait_for(lambda: not _alive(pid), timeout=10, what=f"the command's child {pid} to be gone")
    finally:
        if _alive(pid):
            os.kill(pid, 9)


def test_bad_alert_settings_are_refused(project, pipelines_dir: Path) -> None:
    bad = run_cli("check", env={"ALERT_WEBHOOK_URL": "ftp://example.com/x"})
    assert bad.returncode == 1 and "ALERT_WEBHOOK_URL must be an http(s) URL, got '***'" in bad.stdout
    other = (MODULE.replace('"quiet": {"pipeline": feed("quiet_t"), "alerts": {"enabled": False}}',
                            '"loud": {"pipeline": feed("loud_t"), "alerts": {"webhok_url": "x"}}')
             .replace('"feed": {', '"feed2": {').replace('"own": {', '"own2": {').replace('"watched": {', '"w2": {'))
    (pipelines_dir / "other_pipeline.py").write_text(other)
    broken = {b["name"]: b["error"] for b in json.loads(run_cli("list", "--json").stdout)["broken"]}
    assert "pipeline 'loud': unknown alerts setting(s) webhok_url" in broken["loud"]

