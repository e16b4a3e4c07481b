"""Small validation helpers shared by config, pipelines and loaders."""

from __future__ import annotations

import re

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def is_identifier(name: str) -> bool:
    """True for names that need no quoting in ClickHouse (letters, digits, underscore)."""
    return bool(_IDENTIFIER.match(name))


def quote_identifier(name: str) -> str:
    """Quote a database, table or column name for ClickHouse SQL."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


# ---- cron schedules: the one grammar (pipeline entries, CHECK_CRON_SCHEDULE, cron, the scheduler) ----

#: The names Debian's cron knows for a schedule (crontab(5)), as five fields. ``@reboot`` is not a
#: schedule (it fires when the daemon starts, never at a time), so it is not among them.
CRON_NAMES: dict[str, str] = {
    "@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *",
}
_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_VALUE = r"(?:[0-9]+|[A-Za-z]{3})"
_CRON_ITEM = re.compile(rf"^(?:\*|{_VALUE}-{_VALUE})(?:/[0-9]+)?$|^{_VALUE}$")
NEVER_FIRES_YEARS = 10  # a schedule with no fire in this many years never fires (29 February fires every 4-8)


def cron_expression(schedule: str) -> str:
    """The five fields a valid schedule stands for (``@daily`` -> ``0 0 * * *``)."""
    text = " ".join(schedule.split())
    return CRON_NAMES.get(text.lower(), text)


def cron_schedule(value: str) -> str:
    """A schedule cron and the scheduler both run, whitespace normalised; else a one-line ``ValueError``.

    Five fields of numbers, three-letter names, ``*``, ranges, steps and lists (what Debian's
    cron reads), or one of :data:`CRON_NAMES`. Refused: a seconds field, ``@reboot``, croniter's
    own extensions (``L``, ``W``, ``#``, ``H``, ``?``) that cron would reject, and a schedule
    that never fires (``0 0 31 2 *``)."""
    from datetime import UTC, datetime

    from croniter import CroniterBadDateError, croniter

    text = " ".join(value.split())
    names = ", ".join(CRON_NAMES)
    if text.startswith("@"):
        if text.lower() not in CRON_NAMES:
            raise ValueError(f"'{text}' is not a schedule cron fires on (use 5 fields or one of {names})")
        return text.lower()
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"'{text}' has {len(fields)} fields; cron needs 5 "
                         f"(minute hour day-of-month month day-of-week) or one of {names}")
    for label, field in zip(_FIELDS, fields, strict=True):
        if not all(_CRON_ITEM.match(item) for item in field.split(",")):
            raise ValueError(f"'{text}': {label} '{field}' is not cron syntax (numbers, names, '*', ranges a-b, "
                             "steps /n and lists a,b)")
    if not croniter.is_valid(text):
        raise ValueError(f"invalid cron expression '{text}'")
    try:
        croniter(text, datetime.now(UTC), max_years_between_matches=NEVER_FIRES_YEARS).get_next(datetime)
    except CroniterBadDateError:
        raise ValueError(f"'{text}' never fires (no minute matches it in the next {NEVER_FIRES_YEARS} years)") from None
    return text
