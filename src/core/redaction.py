"""Redaction: the one place that decides what is secret and masks it, for the whole framework.

A :class:`Redactor` masks, in any text (log records, error messages, run history, echoed HTTP
bodies):

- every value it has been told is secret (configured passwords, variables named like secrets,
  the values of secret headers and URL parameters a run sends, auth tokens);
- the value of a secret URL parameter (``?api_key=...``) and of a secret header
  (``Authorization: Bearer ...``, ``"X-API-Key": "..."``) wherever such a pair appears, even when
  the value itself was never seen (an API quoting a request back).

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
