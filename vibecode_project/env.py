"""Typed readers for environment variables that fail loudly on bad values.

Every setting VibeCode reads from the environment goes through one of these, so a typo such as
``DEBUG=ture`` stops the process at start-up with a message naming the variable, instead of being
silently read as false. (healthchecks ``hc/settings.py`` does the same with ``envbool``/``envint``.)
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from typing import Any

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean; use true or false.")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}.")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    """A comma-separated list; unset or empty means the default (as a copied .env leaves it)."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_networks(name: str, default: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for item in env_list(name, default):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {item!r} is not an IP address or CIDR network.") from None
    return networks


def env_choice(name: str, default: str, choices: set[str]) -> str:
    value = os.environ.get(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} must be one of {', '.join(sorted(choices))}.")
    return value


def env_rate(name: str, default: str) -> str:
    """A django-ratelimit rate such as ``100/m``."""
    value = os.environ.get(name, default).strip()
    count, _, period = value.partition("/")
    if not count.isdigit() or period not in {"s", "m", "h", "d"}:
        raise ImproperlyConfigured(f"{name}={value!r} is not a rate like 100/m (units: s, m, h, d).")
    return value


def env_json(name: str, default: dict[str, Any]) -> dict[str, Any]:
    """A JSON object; unset or empty means the default. Its shape is the reader's to check."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ImproperlyConfigured(f"{name} must be a JSON object.")
    return value


ENGINE_NAME_RE = r"^[a-z0-9][a-z0-9-]{0,62}$"


def engine_tls_dir_variable(name: str) -> str:
    """The variable naming an extra engine's client certificates: VIBECODE_ENGINE_<NAME>_TLS_DIR."""
    return f"VIBECODE_ENGINE_{name.upper().replace('-', '_')}_TLS_DIR"


def env_engines(name: str) -> dict[str, dict[str, str]]:
    """Extra Docker engines, ``name=url,name2=url2`` -> ``{name: {"url": ..., "tls_dir": ...}}``.
    Each name is a slug other than ``local`` (that one is ``DOCKER_HOST``); each URL is
    ``unix://...`` or ``tcp://...``; a tcp engine's TLS directory comes from
    ``VIBECODE_ENGINE_<NAME>_TLS_DIR`` (ca.pem, cert.pem, key.pem)."""
    raw = os.environ.get(name, "").strip()
    engines: dict[str, dict[str, str]] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        engine, sep, url = (piece.strip() for piece in item.partition("="))
        if not sep or not re.match(ENGINE_NAME_RE, engine):
            raise ImproperlyConfigured(
                f"{name}: {item!r} is not name=url with a lower-case slug name (a-z, 0-9, -)."
            )
        if engine == "local":
            raise ImproperlyConfigured(f"{name}: engine local is DOCKER_HOST; give the others other names.")
        if engine in engines:
            raise ImproperlyConfigured(f"{name}: engine {engine} is listed twice.")
        if not url.startswith(("unix://", "tcp://")):
            raise ImproperlyConfigured(f"{name}: engine {engine}'s URL must start with unix:// or tcp://.")
        engines[engine] = {"url": url, "tls_dir": os.environ.get(engine_tls_dir_variable(engine), "").strip()}
    return engines
