"""Who may call the HTTP API, as configured: ``AuthConfig`` and ``check_bind``.

Owns the tokens and the options around them (hosts, origins, public paths, the session
cookie's name and lifetime), each checked where the config is built, the reading of the
two token variables (``AuthConfig.from_env``, called by the CLI: the only place the
environment is read), and the rule that a non-loopback address needs a token
(``check_bind``). Does not decide on a request (``auth.py``) nor sign cookies
(``session.py``). ``orchestrator.server.auth`` re-exports both names.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..errors import ConfigurationError
from ..sanitize import escape

TOKEN_ENV = "ORCH_API_TOKEN"
READ_TOKEN_ENV = "ORCH_API_READ_TOKEN"
DEFAULT_COOKIE_NAME = "orch_session"
DEFAULT_SESSION_TTL = 12 * 3600.0  # seconds: a working day
MAX_SESSION_TTL = 30 * 86_400.0
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _check_token(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    if not value or not all("!" <= c <= "~" for c in value):  # what an HTTP header carries as is
        raise ConfigurationError(
            f"{name} must be printable ASCII without spaces (e.g. python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')",
            code="BAD_TOKEN",
            field=name,
        )
    return value


def origin_key(value: str) -> tuple[str, str, int] | None:
    """``scheme://host[:port]`` as (scheme, host, port), or None when it is not one."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in ("http", "https") or not host or parts.path not in ("", "/") or parts.query:
        return None
    return scheme, host, port if port is not None else DEFAULT_PORTS[scheme]


@dataclass(frozen=True)
class AuthConfig:
    """Who may call the HTTP API. Refused at construction: neither a token nor ``open=True``
    (the API mounted in a user's own app must choose), both, a read token without the full
    one or equal to it, a token that is not printable ASCII.

    - ``token``: allows everything; ``read_token``: GET and HEAD only. Never in ``repr``.
    - ``open``: no token at all (``orch serve`` without ``ORCH_API_TOKEN``): every request
      is allowed whose Host is a loopback name (or in ``allowed_hosts``).
    - ``metrics_need_token``: ``/metrics`` needs the read (or full) token.
    - ``allowed_hosts``: more Host names accepted (any port), ``"*"`` any. Loopback names
      with the server's port are always accepted. With a token and no list, any Host is.
    - ``allowed_origins``: more Origins (``https://dash.example.com``) accepted besides the
      server's own, ``"*"`` any.
    - ``public_paths``: more paths readable without credentials (GET, HEAD); one ending in
      ``/`` is a prefix (a dashboard's static files).
    - ``cookie_name``, ``cookie_secure`` (None: when the request came over https),
      ``session_ttl`` (seconds) for the dashboard's session cookie.
    """

    token: str | None = field(default=None, repr=False)
    read_token: str | None = field(default=None, repr=False)
    open: bool = False
    metrics_need_token: bool = False
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    public_paths: tuple[str, ...] = ()
    cookie_name: str = DEFAULT_COOKIE_NAME
    cookie_secure: bool | None = None
    session_ttl: float = DEFAULT_SESSION_TTL
    # Open mode's CSRF token: one per process (a restart ends it, as it ends the pages that hold it)
    open_csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_token(self.token, "token")
        _check_token(self.read_token, "read_token")
        if self.token is None and not self.open:
            raise ConfigurationError(
                "the HTTP API needs a token (AuthConfig(token=...), ORCH_API_TOKEN for orch serve) "
                "or an explicit AuthConfig(open=True), which answers loopback Hosts only",
                code="TOKEN_REQUIRED",
                field="token",
            )
        if self.token is not None and self.open:
            raise ConfigurationError("open=True means no token: give a token or open=True, not both", field="open")
        if self.read_token is not None and self.token is None:
            raise ConfigurationError("a read token needs the full token too (ORCH_API_TOKEN)", field="read_token")
        if self.read_token is not None and hmac.compare_digest(self.read_token, self.token or ""):
            raise ConfigurationError("the read token must differ from the full token", field="read_token")
        if not 1 <= self.session_ttl <= MAX_SESSION_TTL:
            raise ConfigurationError(f"session_ttl must be 1 to {MAX_SESSION_TTL:.0f} seconds", field="session_ttl")
        if not self.cookie_name or not all(c.isalnum() or c in "_-" for c in self.cookie_name):
            raise ConfigurationError("cookie_name must be letters, digits, _ and -", field="cookie_name")
        hosts = tuple(h.strip().lower().strip("[]") for h in self.allowed_hosts)
        if not all(hosts) or any(":" in h and not _is_ip(h) for h in hosts):
            raise ConfigurationError("allowed_hosts are host names without a port, or *", field="allowed_hosts")
        origins = tuple(o.strip().lower().rstrip("/") for o in self.allowed_origins)
        if any(o != "*" and origin_key(o) is None for o in origins):
            raise ConfigurationError("allowed_origins are scheme://host[:port], or *", field="allowed_origins")
        if not all(p.startswith("/") for p in self.public_paths):
            raise ConfigurationError("public_paths start with /", field="public_paths")
        object.__setattr__(self, "allowed_hosts", hosts)
        object.__setattr__(self, "allowed_origins", origins)
        object.__setattr__(self, "public_paths", tuple(self.public_paths))

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        metrics_need_token: bool = False,
        allowed_hosts: Iterable[str] = (),
        allowed_origins: Iterable[str] = (),
        cookie_secure: bool | None = None,
    ) -> AuthConfig:
        """The config of ``orch serve``: the tokens from ``ORCH_API_TOKEN`` and
        ``ORCH_API_READ_TOKEN`` (empty counts as unset), open when there is none."""
        env = os.environ if environ is None else environ
        token = _check_token(env.get(TOKEN_ENV) or None, TOKEN_ENV)
        read_token = _check_token(env.get(READ_TOKEN_ENV) or None, READ_TOKEN_ENV)
        if read_token is not None and token is None:
            raise ConfigurationError(
                f"{READ_TOKEN_ENV} is set but {TOKEN_ENV} is not: set both, or neither to serve open on loopback",
                code="TOKEN_REQUIRED",
                field=READ_TOKEN_ENV,
            )
        if read_token is not None and hmac.compare_digest(read_token, token or ""):
            raise ConfigurationError(f"{READ_TOKEN_ENV} must differ from {TOKEN_ENV}", field=READ_TOKEN_ENV)
        return cls(
            token=token,
            read_token=read_token,
            open=token is None,
            metrics_need_token=metrics_need_token,
            allowed_hosts=tuple(allowed_hosts),
            allowed_origins=tuple(allowed_origins),
            cookie_secure=cookie_secure,
        )


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def is_loopback(name: str) -> bool:
    """``localhost``, ``*.localhost`` (RFC 6761: never resolved by DNS), 127.0.0.0/8, ::1."""
    name = name.strip().lower().strip("[]")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, config: AuthConfig) -> None:
    """Refuse to serve on a non-loopback address without a token (``ConfigurationError``,
    code TOKEN_REQUIRED, field host: the CLI's exit 2)."""
    if config.token is None and not is_loopback(host):
        raise ConfigurationError(
            f"--host {escape(host) or '(all interfaces)'} is not a loopback address: set {TOKEN_ENV} "
            f"(and {READ_TOKEN_ENV} for read-only clients) to serve on it, or serve on 127.0.0.1",
            code="TOKEN_REQUIRED",
            field="host",
        )
