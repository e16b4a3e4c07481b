"""HTTP auth strategies: what every request of a run carries to prove who it is.

Built-ins are :class:`BearerAuth`, :class:`BasicAuth` and :class:`ApiKeyAuth` (also written as a
dict, e.g. ``{"type": "bearer", "token_env": "API_TOKEN"}``). Your own is a subclass of
:class:`Auth` passed as ``auth=``; it gets what a built-in gets: its values are masked in logs,
errors and the run history, its query parameters are masked in URLs and win over the same name
in a next-page link, and a ``ConfigError`` it raises names the extractor.
"""

from __future__ import annotations

import base64
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.exceptions import ConfigError
from pipelines.interfaces import RunContext


@dataclass
class AuthParts:
    """What one run's requests carry: headers, query parameters, and the values to mask."""

    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    secrets: set[str] = field(default_factory=set)


class Auth(ABC):
    """Base of HTTP auth strategies: subclass it and implement :meth:`parts`.

    ``parts`` is called once per run, before the first request (read secrets there, not in
    ``__init__``: importing a pipeline module never needs them).
    """

    #: Named in error messages (``bearer auth needs 'token' or token_env``).
    kind: str = "custom"

    @abstractmethod
    def parts(self, context: RunContext) -> AuthParts:
        """Headers and query parameters for every request of this run, and the secret values."""

    def secret(self, context: RunContext, key: str, value: str | None, env: str | None) -> str:
        """``value`` when given, else the variable ``env`` from the environment or ``.env``."""
        if value is not None:
            return str(value)
        if not env:
            raise ConfigError(f"{self.kind} auth needs {key!r} or {key}_env")
        found = context.settings.extra(env)
        if not found:
            raise ConfigError(f"{env} is not set (environment or .env); it holds the {self.kind} auth {key}")
        return found


class BearerAuth(Auth):
    """``Authorization: Bearer <token>``; ``token`` or ``token_env`` (a variable holding it)."""

    kind = "bearer"

    def __init__(self, token: str | None = None, token_env: str | None = None) -> None:
        self.token, self.token_env = token, token_env

    def parts(self, context: RunContext) -> AuthParts:
        token = self.secret(context, "token", self.token, self.token_env)
        return AuthParts(headers={"Authorization": f"Bearer {token}"}, secrets={token})


class BasicAuth(Auth):
    """HTTP basic auth; each of ``username``/``password`` given directly or as ``*_env``."""

    kind = "basic"

    def __init__(self, username: str | None = None, password: str | None = None, *,
                 username_env: str | None = None, password_env: str | None = None) -> None:
        self.username, self.password = username, password
        self.username_env, self.password_env = username_env, password_env

    def parts(self, context: RunContext) -> AuthParts:
        user = self.secret(context, "username", self.username, self.username_env)
        password = self.secret(context, "password", self.password, self.password_env)
        encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
        return AuthParts(headers={"Authorization": f"Basic {encoded}"}, secrets={password, encoded})


class ApiKeyAuth(Auth):
    """An API key in a header (``location="header"``, default) or a query parameter (``"query"``)."""

    kind = "api_key"

    def __init__(self, value: str | None = None, value_env: str | None = None, *, name: str = "X-API-Key",
                 location: str = "header") -> None:
        if location not in {"header", "query"}:
            raise ConfigError("api_key auth 'in' must be 'header' or 'query'")
        self.value, self.value_env, self.name, self.location = value, value_env, name, location

    def parts(self, context: RunContext) -> AuthParts:
        value = self.secret(context, "value", self.value, self.value_env)
        if self.location == "query":
            return AuthParts(params={self.name: value}, secrets={value})
        return AuthParts(headers={self.name: value}, secrets={value})


def auth_from_config(auth: Auth | Mapping[str, Any] | None, owner: str) -> Auth | None:
    """The strategy for ``auth=``: an :class:`Auth` as is, a dict as its built-in (``owner`` names errors)."""
    if auth is None or isinstance(auth, Auth):
        return auth
    if not isinstance(auth, Mapping):
        raise ConfigError(f"{owner}: auth must be a dict such as {{'type': 'bearer', 'token_env': ...}} "
                          f"or an Auth instance, got {type(auth).__name__}")
    kind = str(auth.get("type", "")).replace("-", "_").lower()
    try:
        if kind == "bearer":
            return BearerAuth(auth.get("token"), auth.get("token_env"))
        if kind == "basic":
            return BasicAuth(auth.get("username"), auth.get("password"), username_env=auth.get("username_env"),
                             password_env=auth.get("password_env"))
        if kind == "api_key":
            return ApiKeyAuth(auth.get("value"), auth.get("value_env"), name=auth.get("name", "X-API-Key"),
                              location=auth.get("in", "header"))
    except ConfigError as exc:
        raise ConfigError(f"{owner}: {exc}") from None
    raise ConfigError(f"{owner}: auth type {auth.get('type')!r} is not one of bearer, basic, api_key")
