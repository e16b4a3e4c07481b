"""Where alerts go: a webhook (Slack, Teams or plain JSON), email over SMTP, or a command.

Every send has a short timeout (``ALERT_TIMEOUT``) and raises on failure; the dispatcher logs
and records the failure and never lets it fail a run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import smtplib
import ssl
import subprocess
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from core.config import Settings
from core.exceptions import AlertError
from core.redaction import Redactor, mask_webhook
from ops.alerts.events import AlertEvent


class Channel:
    name = "channel"

    def describe(self) -> str:
        """Where it sends to, secrets masked."""
        raise NotImplementedError

    def send(self, event: AlertEvent) -> None:
        raise NotImplementedError


class Webhook(Channel):
    """HTTP POST: ``slack`` ({"text": ...}), ``teams`` (an Adaptive Card message, as Teams
    workflows expect) or ``json`` (the event itself)."""

    name = "webhook"

    def __init__(self, url: str, fmt: str, timeout: float) -> None:
        self.url, self.format, self.timeout = url, fmt, timeout

    def describe(self) -> str:
        return f"webhook {mask_webhook(self.url)} ({self.format})"

    def payload(self, event: AlertEvent) -> dict[str, Any]:
        if self.format == "slack":
            return {"text": event.text()}
        if self.format == "teams":
            facts = [{"title": k, "value": str(v)} for k, v in
                     (("pipeline", event.pipeline), ("interval", event.interval), ("run", event.run_id),
                      ("host", event.host), ("at", event.at)) if v]
            card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
                    "version": "1.4", "body": [
                        {"type": "TextBlock", "text": event.title, "weight": "Bolder", "size": "Medium", "wrap": True},
                        {"type": "TextBlock", "text": event.summary, "wrap": True},
                        {"type": "FactSet", "facts": facts}]}
            return {"type": "message", "attachments": [
                {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}]}
        return event.as_dict()

    def send(self, event: AlertEvent) -> None:
        import httpx

        try:
            response = httpx.post(self.url, json=self.payload(event), timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise AlertError(f"{self.describe()}: {type(exc).__name__}") from None
        if response.status_code >= 300:
            raise AlertError(f"{self.describe()}: HTTP {response.status_code}")


class Email(Channel):
    """SMTP with STARTTLS (port 587), implicit TLS (``ssl``, port 465) or plain (``none``)."""

    name = "email"

    def __init__(self, settings: Settings) -> None:
        self.host = settings.alert_smtp_host or ""
        self.port = settings.alert_smtp_port
        self.security = settings.alert_smtp_security
        self.user = settings.alert_smtp_user
        self.password = settings.alert_smtp_password.get_secret_value()
        self.sender = settings.alert_email_from or f"data-processor@{self.host}"
        self.to = [a.strip() for a in (settings.alert_email_to or "").split(",") if a.strip()]
        self.timeout = settings.alert_timeout
        self.ca_file = str(settings.alert_smtp_ca_file) if settings.alert_smtp_ca_file else None

    def describe(self) -> str:
        return f"email to {', '.join(self.to)} via {self.host}:{self.port} ({self.security})"

    def send(self, event: AlertEvent) -> None:
        message = EmailMessage()
        message["Subject"], message["From"], message["To"] = event.title, self.sender, ", ".join(self.to)
        # What mail clients and spam filters expect of every message (threading, ordering).
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = make_msgid("data-processor", domain=self.sender.rpartition("@")[2] or None)
        message.set_content(event.text())
        try:
            # Certificates are verified (against ALERT_SMTP_CA_FILE when set, e.g. a private CA).
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                if self.security == "starttls":
                    smtp.starttls(context=context)
                if self.user:
                    smtp.login(self.user, self.password)
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            text = Redactor([self.password])(str(exc))
            raise AlertError(f"{self.describe()}: {type(exc).__name__}: {text[:200]}") from None


class Command(Channel):
    """Runs a command (no shell) with the event as JSON on stdin; a non-zero exit is a failure."""

    name = "command"

    def __init__(self, command: str, timeout: float) -> None:
        self.argv, self.timeout = shlex.split(command), timeout

    def describe(self) -> str:
        return f"command {self.argv[0] if self.argv else ''}"

    def send(self, event: AlertEvent) -> None:
        try:
            # A process group of its own: on timeout the command and everything it started end.
            process = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, start_new_session=True)
        except OSError as exc:
            raise AlertError(f"{self.describe()}: {type(exc).__name__}: {exc}") from None
        try:
            _, stderr = process.communicate(json.dumps(event.as_dict()), timeout=self.timeout)
        except subprocess.TimeoutExpired as exc:
            _kill_group(process)
            raise AlertError(f"{self.describe()}: {type(exc).__name__}: {exc}") from None
        if process.returncode != 0:
            raise AlertError(f"{self.describe()}: exit {process.returncode}: {stderr.strip()[:200]}")


def _kill_group(process: subprocess.Popen[str]) -> None:
    """SIGKILL the command's process group, reap the command, close its pipes (a child that left
    the group could hold them open: they are not read again)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def configured(settings: Settings) -> list[Channel]:
    """The channels these settings configure (none when no ALERT_* channel is set)."""
    channels: list[Channel] = []
    if settings.alert_webhook_url:
        channels.append(Webhook(settings.alert_webhook_url.get_secret_value(), settings.alert_webhook_format,
                                settings.alert_timeout))
    if settings.alert_smtp_host and settings.alert_email_to:
        channels.append(Email(settings))
    if settings.alert_command:
        channels.append(Command(settings.alert_command, settings.alert_timeout))
    return channels
