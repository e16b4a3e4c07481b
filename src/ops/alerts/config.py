"""Alert settings: ``ALERT_*`` in ``.env``, overridable per pipeline with the entry's ``alerts`` dict."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from core.config import Settings
from core.exceptions import ConfigError

# Entry keys (the setting's name without ``alert_``) a pipeline may override, and ``enabled``.
OVERRIDABLE = ("webhook_url", "webhook_format", "smtp_host", "smtp_port", "smtp_security", "smtp_user",
               "smtp_password", "smtp_ca_file", "email_from", "email_to", "command", "timeout", "remind_hours",
               "on_warn")


def validate_overrides(pipeline: str, alerts: dict[str, Any] | None) -> None:
    """Refuse unknown keys and invalid values in a pipeline's ``alerts`` when it is built."""
    if not alerts:
        return
    unknown = sorted(set(alerts) - {*OVERRIDABLE, "enabled"})
    if unknown:
        raise ConfigError(f"pipeline '{pipeline}': unknown alerts setting(s) {', '.join(unknown)} "
                          f"(known: enabled, {', '.join(OVERRIDABLE)})")
    try:
        Settings.model_validate({f"alert_{k}": v for k, v in alerts.items() if k != "enabled"})
    except ValidationError as exc:
        problems = "; ".join(f"{str(e['loc'][0]).removeprefix('alert_')}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"pipeline '{pipeline}': invalid alerts setting ({problems})") from None


def for_pipeline(settings: Settings, alerts: dict[str, Any] | None) -> Settings | None:
    """The settings alerts of this pipeline use; ``None`` when its alerts are turned off."""
    if not alerts:
        return settings
    if alerts.get("enabled") is False:
        return None
    updates = {f"alert_{k}": v for k, v in alerts.items() if k != "enabled"}
    merged = Settings.model_validate({**settings.model_dump(), **updates})
    merged._env_path = settings._env_path
    return merged
