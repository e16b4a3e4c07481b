"""Redaction: the one place that decides what is secret and masks it, for the whole framework.

A :class:`Redactor` masks, in any text (log records, error messages, run history, echoed HTTP
bodies):

- every value it has been told is secret (configured passwords, variables named like secrets,
  the values of secret headers and URL parameters a run sends, auth tokens);
- the value of a secret URL parameter (``?api_key=...``) and of a secret header
  (``Authorization: Bearer ...``, ``"X-API-Key": "..."``) wherever such a pair appears, even when
  the value itself was never seen (an API quoting a request back).
- credentials in a query text (``s3(url, key, secret, ...)``, ``postgresql(..., password)``,
  named-collection overrides, ``CREATE NAMED COLLECTION`` values), shown as ClickHouse shows them:
  ``'[HIDDEN]'`` (:func:`mask_query`).

Secret by default: the headers ``Authorization``, ``Proxy-Authorization``, ``X-API-Key``,
``Cookie``, ``Set-Cookie`` and every ``*-Token``; the URL parameters ``api_key``, ``apikey``,
``key``, ``token``, ``access_token``, ``secret``, ``password``, ``signature``, ``sig`` and names
ending in ``_token``, ``_key``, ``_secret`` or ``_password``; settings variables whose name contains
``PASSWORD``, ``SECRET``, ``TOKEN``, ``API_KEY``, ``PRIVATE_KEY`` or ``CREDENTIAL``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key", "cookie", "set-cookie"})
SECRET_PARAMS = frozenset({"api_key", "apikey", "key", "token", "access_token", "secret", "password",
                           "signature", "sig"})
_PARAM_SUFFIXES = ("_token", "_key", "_secret", "_password", "-token", "-key")
# Values shorter than this are not masked by value (masking "a" would garble every message).
_MIN_SECRET = 3

_PARAM_NAMES = "|".join(sorted(SECRET_PARAMS, key=len, reverse=True))
_URL_PARAM = re.compile(rf"(?i)([?&;](?:[\w.-]*(?:{'|'.join(_PARAM_SUFFIXES)})|{_PARAM_NAMES})=)([^&#\s'\"<>]+)")
_HEADER_NAMES = "|".join(sorted(SECRET_HEADERS, key=len, reverse=True)) + r"|[\w-]+-token"
_HEADER = re.compile(
    rf"(?i)\b({_HEADER_NAMES})([\"']?\s*[:=]\s*[\"']?)((?:(?:bearer|basic|token|digest)\s+)?)([^\s\"',;}}]+)")


_SECRET_VARIABLE = re.compile(r"(PASSWORD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIALS?)", re.I)


def is_secret_variable(name: str) -> bool:
    """True for a settings variable whose value is secret (``CLICKHOUSE_PASSWORD``, ``API_KEY``...)."""
    return bool(_SECRET_VARIABLE.search(name))


def mask_url(url: str) -> str:
    """The URL with the password of its userinfo (``user:password@``) replaced by ``***``."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", f":{MASK}@", 1)))


def mask_webhook(url: str) -> str:
    """Scheme and host of a webhook URL; its path and query (where the token lives) masked."""
    if not url:
        return ""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}/{MASK}"


def is_secret_header(name: str) -> bool:
    """True for a header whose value must never be shown (see the module doc)."""
    lowered = name.strip().lower()
    return lowered in SECRET_HEADERS or lowered.endswith("-token")


def is_secret_param(name: str) -> bool:
    """True for a URL parameter whose value must never be shown (see the module doc)."""
    lowered = name.strip().lower()
    return lowered in SECRET_PARAMS or lowered.endswith(_PARAM_SUFFIXES)


class Redactor:
    """Masks known secret values and secret-looking name/value pairs in text; callable."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._values: tuple[str, ...] = ()
        self.add(secrets)

    def add(self, secrets: Iterable[str | None]) -> None:
        """Treat these values as secret from now on (short or empty values are ignored)."""
        known = set(self._values) | {s for s in secrets if s and len(s) >= _MIN_SECRET}
        # Longest first, so a secret containing another is masked whole.
        self._values = tuple(sorted(known, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        text = mask_query(text)
        for secret in self._values:
            if secret in text:
                text = text.replace(secret, MASK)
        text = _URL_PARAM.sub(lambda m: m.group(1) + MASK, text)
        return _HEADER.sub(lambda m: m.group(1) + m.group(2) + MASK, text)

    @staticmethod
    def header(name: str, value: str) -> str:
        """A header's value as it may be shown."""
        return MASK if is_secret_header(name) else value

    is_secret_header = staticmethod(is_secret_header)
    is_secret_param = staticmethod(is_secret_param)

    def url(self, url: str, params: Mapping[str, Any] | None = None, secret_names: Iterable[str] = ()) -> str:
        """The URL with its query (plus ``params``), secret values masked, no userinfo password."""
        parts = urlsplit(url)
        names = {n.lower() for n in secret_names}
        query = parse_qsl(parts.query, keep_blank_values=True) + [(k, str(v)) for k, v in (params or {}).items()]
        masked = [(k, MASK if (k.lower() in names or is_secret_param(k)) else v) for k, v in query]
        return self(mask_url(urlunsplit(parts._replace(query=urlencode(masked, safe="{}*")))))


def header_secrets(headers: Mapping[str, str]) -> set[str]:
    """The values of secret headers (and the credential after an auth scheme) to mask by value."""
    values: set[str] = set()
    for name, value in headers.items():
        if is_secret_header(name) and value:
            values.add(value)
            scheme, _, credential = value.partition(" ")
            if credential and scheme.lower() in {"bearer", "basic", "token", "digest"}:
                values.add(credential.strip())
    return values


def param_secrets(url: str, params: Mapping[str, Any] | None = None) -> set[str]:
    """The values of secret URL parameters in ``url`` and ``params``, to mask by value."""
    query = parse_qsl(urlsplit(url).query, keep_blank_values=True) + list((params or {}).items())
    return {str(v) for k, v in query if is_secret_param(str(k)) and v not in (None, "")}


# ---- query texts: credentials in table-function arguments -------------------------------------
# ClickHouse shows ``s3('https://...', 'KEY', '[HIDDEN]', 'Parquet')`` in its own logs; a query
# text the framework repeats (an error's ``while running:``, a log line, run history) is masked
# the same way, whether or not the secret was ever configured here.
HIDDEN = "[HIDDEN]"
# Table functions and engines whose positional arguments after the URL are credentials up to
# the format name: s3(url, [key, secret, [token]], format, ...).
_OBJECT_STORE_FUNCTIONS = frozenset({"s3", "s3cluster", "gcs", "oss", "cosn", "s3queue", "deltalake", "deltalakes3",
                                     "iceberg", "icebergs3", "hudi"})
# Functions and engines whose fifth argument is a password: postgresql(host, db, table, user, password).
_PASSWORD_AT_4 = frozenset({"postgresql", "mysql", "mongodb", "materializedpostgresql", "materializedmysql",
                            "azureblobstorage"})
_CALL = re.compile(r"(?i)\b(" + "|".join(sorted(_OBJECT_STORE_FUNCTIONS | _PASSWORD_AT_4, key=len, reverse=True))
                   + r")\s*\(")
_LITERAL = r"'(?:[^'\\]|\\.|'')*(?:'|$)"  # a quoted string, or the rest of a text cut inside one
_LITERAL_AT = re.compile(_LITERAL)
_SECRET_ARGUMENT = re.compile(r"(?i)\b(secret_access_key|access_key_id|aws_secret_access_key|aws_access_key_id|"
                              r"session_token|password|account_key)(\s*=\s*)(" + _LITERAL + ")")
_NAMED_COLLECTION = re.compile(r"(?is)\b((?:CREATE|ALTER)\s+NAMED\s+COLLECTION\b)(.*)")
_FORMAT_NAME = re.compile(r"(?i)^(auto|one|native|values|npy|bson\w*|(csv|tsv|tabseparated|json|ndjson|jsonlines|"
                          r"rowbinary|arrow|parquet|orc|avro|protobuf|capnproto|msgpack|rawblob|lineasstring|"
                          r"customseparated|template|regexp)[a-z]*)$")


def _arguments(text: str, start: int) -> tuple[list[tuple[int, int]], int]:
    """The (start, end) spans of the top-level arguments of a call whose ``(`` ends at ``start``,
    and where the call ends (the end of ``text`` when it was cut off)."""
    spans, depth, begin, i = [], 0, start, start
    while i < len(text):
        char = text[i]
        if char == "'":
            match = _LITERAL_AT.match(text, i)
            i = match.end() if match else len(text)
            continue
        if char in "([{":
            depth += 1
        elif char in ")]}":
            if depth == 0:
                spans.append((begin, i))
                return spans, i
            depth -= 1
        elif char == "," and depth == 0:
            spans.append((begin, i))
            begin = i + 1
        i += 1
    spans.append((begin, len(text)))
    return spans, len(text)


def _secret_positions(function: str, values: list[str]) -> list[int]:
    """Which positional arguments of ``function(values...)`` are credentials."""
    if function in _PASSWORD_AT_4:
        return [4] if len(values) > 4 else []
    first = 1 if function == "s3cluster" else 0  # s3Cluster(cluster, url, ...)
    if len(values) <= first or not values[first].startswith("'"):
        return []  # a named collection: its overrides are masked by name
    positions = []
    for index in range(first + 1, min(len(values), first + 4)):
        value = values[index]
        if value.upper() == "NOSIGN" or _FORMAT_NAME.match(value.strip("'")):
            break
        positions.append(index)
    return positions


def mask_query(text: str) -> str:
    """``text`` with the credentials in table-function arguments (``s3(url, key, secret, ...)``,
    ``postgresql(..., user, password)``), in named arguments (``secret_access_key = '...'``) and in
    ``CREATE NAMED COLLECTION`` values replaced by ``'[HIDDEN]'``, as ClickHouse shows them."""
    text = _NAMED_COLLECTION.sub(lambda m: m.group(1) + re.sub(_LITERAL, f"'{HIDDEN}'", m.group(2)), text)
    text = _SECRET_ARGUMENT.sub(lambda m: f"{m.group(1)}{m.group(2)}'{HIDDEN}'", text)
    position = 0
    while match := _CALL.search(text, position):
        spans, end = _arguments(text, match.end())
        values = [text[a:b].strip() for a, b in spans]
        for index in reversed(_secret_positions(match.group(1).lower(), values)):
            if values[index].startswith("'") and values[index] != f"'{HIDDEN}'":
                a, b = spans[index]
                text = f"{text[:a]}{' ' if text[a] == ' ' else ''}'{HIDDEN}'{text[b:]}"
        position = match.end()
    return text
