"""Previews of what a sandbox serves: its listening ports, their public/private flags, the preview
origins and who may open them.

Each port of a session has its own origin, ``<scheme>://<port>-<session>.<domain>[:port]/``, so
the user's pages never run on VibeCode's origin and the app's cookies never reach them. The proxy
(``preview_app/proxy.py``) serves those origins through the session's tunnel and asks
:func:`authorize_preview` about every request:

* a **public** port (and public previews not turned off by staff): anyone;
* the **owner** with a valid preview cookie (signed, scoped to the session and port, set on the
  preview origin only): allowed;
* no (valid) cookie: a redirect to the app's ``/sessions/<id>/preview/<port>/``, which signs in,
  checks ownership (a stranger gets the 404 page) and hands off a single-use token
  (:func:`create_handoff`) to ``<origin>/__vibecode__/handoff``, where the proxy redeems it
  (:func:`redeem_handoff`) for the cookie.

Every decision that grants or refuses access (hand-off issued, redeemed, refused; port made public
or private) goes to the audit log. Allowed requests themselves are not logged one by one.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core import signing
from django.core.cache import cache
from django.db import transaction

from core_app.errors import DomainError
from preview_app.models import PreviewPort
from sessions_app.audit import session_event_record
from sessions_app.models import SLUG_ALPHABET, Session
from sessions_app.runtime import get_runtime
from sessions_app.runtime.errors import SandboxNotRunning
from sessions_app.runtime.helper import HelperGone
from sessions_app.runtime.tunnel import EGRESS_PORT
from sessions_app.specs import session_ref

logger = logging.getLogger(__name__)

PREVIEW_COOKIE = "vibecode_preview"
HANDOFF_PATH = "/__vibecode__/handoff"
HANDOFF_SECONDS = 60
# How long a preview cookie is good for; the owner is handed off again after that.
COOKIE_MAX_AGE = 12 * 3600
_SIGNING_SALT = "vibecode.preview.cookie"
_HANDOFF_KEY = "preview:handoff:"
# Ports a preview may never reach: the tunnel's own egress listener inside the sandbox.
RESERVED_PORTS = frozenset({EGRESS_PORT})
_PORT = re.compile(r"[1-9][0-9]{0,4}")
_LABEL = re.compile(r"([1-9][0-9]{0,4})-([a-z0-9]{1,16})")


class Audit:
    """Audit-log actions of previews (``SessionEvent.action`` values)."""

    HANDOFF = "preview_handoff"
    REDEEMED = "preview_redeemed"
    REFUSED = "preview_refused"
    PUBLIC = "preview_public"
    PRIVATE = "preview_private"


class PublicPreviewsDisabled(DomainError):
    status_code = 403
    code = "public_previews_disabled"
    default_detail = "Public previews are turned off on this server; ports stay private to you."


class PortInvalid(DomainError):
    status_code = 400
    code = "port_invalid"
    default_detail = "A port is a number from 1 to 65535."


class PortReserved(DomainError):
    status_code = 400
    code = "port_reserved"
    default_detail = "That port belongs to VibeCode inside the workspace and cannot be previewed."


def clean_port(raw: object) -> int:
    """A previewable TCP port, or ``PortInvalid``/``PortReserved`` (400)."""
    text = str(raw) if isinstance(raw, int | str) and not isinstance(raw, bool) else ""
    # ASCII digits only (int() also takes fullwidth digits and " 80 "), no leading zero.
    port = int(text) if _PORT.fullmatch(text) else -1
    if not 0 < port < 65536:
        raise PortInvalid()
    if port in RESERVED_PORTS:
        raise PortReserved()
    return port


def _valid_public_id(public_id: str) -> bool:
    return 0 < len(public_id) <= 16 and all(char in SLUG_ALPHABET for char in public_id)


# --- origins ----------------------------------------------------------------------------------


def _suffix() -> str:
    port = settings.VIBECODE_PREVIEW_PORT
    return f"{settings.VIBECODE_PREVIEW_DOMAIN}:{port}" if port else settings.VIBECODE_PREVIEW_DOMAIN


def preview_origin(session_public_id: str, port: int) -> str:
    """``<scheme>://<port>-<session>.<domain>[:port]`` (no trailing slash)."""
    return f"{settings.VIBECODE_PREVIEW_SCHEME}://{port}-{session_public_id}.{_suffix()}"


def preview_url(session: Session, port: int) -> str:
    """The preview origin of ``port`` of ``session``, as a URL: ``<origin>/``."""
    return preview_origin(session.public_id, port) + "/"


def app_url() -> str:
    """The app's own origin (``VIBECODE_APP_URL``; by default the preview domain itself, which in
    development on ``localhost`` is where the app runs)."""
    return settings.VIBECODE_APP_URL or f"{settings.VIBECODE_PREVIEW_SCHEME}://{_suffix()}"


def parse_preview_host(host: str) -> tuple[int, str] | None:
    """``(port, session_public_id)`` of a preview origin's ``Host`` header, or None when ``host``
    is not one (the app's own host, another domain, a malformed or out-of-range label). The port
    in the header, if any, is ignored."""
    host = (host or "").strip().lower()
    if host.startswith("["):
        return None  # an IPv6 literal is never a preview origin
    host = host.rsplit(":", 1)[0] if ":" in host else host
    host = host.rstrip(".")
    suffix = "." + settings.VIBECODE_PREVIEW_DOMAIN
    if not host.endswith(suffix):
        return None
    match = _LABEL.fullmatch(host[: -len(suffix)])
    if match is None:
        return None
    port, public_id = int(match.group(1)), match.group(2)
    if not 0 < port < 65536 or not _valid_public_id(public_id):
        return None
    return port, public_id


def _safe_next(raw: str | None) -> str:
    """A path on the preview origin to land on after the hand-off; anything else is ``/``."""
    if not raw or not raw.startswith("/") or raw.startswith("//") or "\\" in raw or len(raw) > 2000:
        return "/"
    if any(ord(char) < 0x20 for char in raw):
        return "/"
    return raw


# --- hand-off and cookie ------------------------------------------------------------------------


def _handoff_key(token: str) -> str:
    # The cache holds a digest, so a look at Redis shows no usable token.
    return _HANDOFF_KEY + hashlib.sha256(token.encode()).hexdigest()


def create_handoff(user: AbstractBaseUser, session: Session, port: int) -> str:
    """A single-use token, good for ``HANDOFF_SECONDS``, that the preview origin of ``port`` of
    ``session`` redeems for the owner's preview cookie. Stored in the cache (Redis in
    production) so any replica can redeem it. The caller has checked that ``user`` owns
    ``session`` (the selector)."""
    port = clean_port(port)
    token = secrets.token_urlsafe(32)
    cache.set(
        _handoff_key(token),
        {"session": session.public_id, "port": port, "user": user.pk},
        timeout=HANDOFF_SECONDS,
    )
    session_event_record(session=session, action=Audit.HANDOFF, actor=user, port=port)
    return token


def handoff_redirect_url(user: AbstractBaseUser, session: Session, port: int, next_path: str | None) -> str:
    """Where the app sends its user to open a preview: the origin's hand-off with a fresh token."""
    token = create_handoff(user, session, port)
    query = urlencode({"token": token, "next": _safe_next(next_path)})
    return f"{preview_origin(session.public_id, port)}{HANDOFF_PATH}?{query}"


def _refuse(public_id: str, port: int, reason: str, **detail: Any) -> None:
    session = Session.objects.filter(public_id=public_id).first() if _valid_public_id(public_id) else None
    session_event_record(
        session=session, action=Audit.REFUSED, public_id=public_id[:16], port=port, reason=reason, **detail
    )


def redeem_handoff(session_public_id: str, port: int, token: str) -> str | None:
    """The value of the preview cookie for the origin of ``port`` of ``session_public_id``, in
    exchange for a token from :func:`create_handoff`; None when the token is unknown, used,
    expired, for another origin, or its user no longer owns the session. A token works once,
    across replicas: only the caller whose cache delete removed it gets the cookie."""
    if not token or len(token) > 200:
        _refuse(session_public_id, port, "handoff_missing")
        return None
    key = _handoff_key(token)
    value = cache.get(key)
    if not isinstance(value, dict) or not cache.delete(key):
        _refuse(session_public_id, port, "handoff_used_or_expired")
        return None
    if value.get("session") != session_public_id or value.get("port") != port:
        _refuse(session_public_id, port, "handoff_mismatch")
        return None
    session = (
        Session.objects.filter(public_id=session_public_id).exclude(status=Session.Status.DELETING).first()
    )
    user = get_user_model().objects.filter(pk=value.get("user"), is_active=True).first()
    if session is None or user is None or session.owner_id != user.pk:
        _refuse(session_public_id, port, "handoff_not_owner")
        return None
    session_event_record(session=session, action=Audit.REDEEMED, actor=user, port=port)
    return signing.dumps(
        {"s": session_public_id, "p": port, "u": user.pk}, salt=_SIGNING_SALT, compress=False
    )


def preview_cookie_header(value: str) -> str:
    """The ``Set-Cookie`` value the preview origin answers a redeemed hand-off with: host-only
    (no Domain: it never reaches another port's or the app's origin), HttpOnly, SameSite=Lax,
    Secure under https, for ``COOKIE_MAX_AGE``. An empty ``value`` clears the cookie."""
    parts = [f"{PREVIEW_COOKIE}={value}", "Path=/", f"Max-Age={COOKIE_MAX_AGE if value else 0}"]
    parts += ["HttpOnly", "SameSite=Lax"]
    if settings.VIBECODE_PREVIEW_SCHEME == "https":
        parts.append("Secure")
    return "; ".join(parts)


def _cookie_user(cookie_value: str | None, public_id: str, port: int) -> int | None:
    """The user id in a valid, unexpired preview cookie for this origin; else None."""
    if not cookie_value or len(cookie_value) > 1000:
        return None
    try:
        data = signing.loads(cookie_value, salt=_SIGNING_SALT, max_age=COOKIE_MAX_AGE)
    except signing.BadSignature:  # also SignatureExpired
        return None
    if not isinstance(data, dict) or data.get("s") != public_id or data.get("p") != port:
        return None
    user = data.get("u")
    return user if isinstance(user, int) else None


@dataclass(frozen=True)
class PreviewDecision:
    """What the proxy does with a request to a preview origin.

    ``status`` 200: serve it through the tunnel of session ``session_id`` (the internal id);
    302: redirect to ``redirect_url`` (the app's hand-off page); 403 or 404: refuse.
    ``session_status`` lets the proxy answer a clear page for a workspace that is not running."""

    allowed: bool
    status: int
    reason: str
    redirect_url: str = ""
    session_id: int | None = None
    session_status: str = ""


def authorize_preview(
    session_public_id: str, port: int, cookie_value: str | None, path: str = "/"
) -> PreviewDecision:
    """May this request reach ``port`` of ``session_public_id``? See the module docstring.
    ``path`` is where the visitor was going, to come back to after the hand-off."""
    if not _valid_public_id(session_public_id) or not 0 < port < 65536:
        return PreviewDecision(False, 404, "no_such_session")
    session = (
        Session.objects.filter(public_id=session_public_id).exclude(status=Session.Status.DELETING).first()
    )
    if session is None:
        return PreviewDecision(False, 404, "no_such_session")
    if port in RESERVED_PORTS:
        _refuse(session_public_id, port, "port_reserved")
        return PreviewDecision(False, 403, "port_reserved")
    found = dict(session_id=session.pk, session_status=session.status)
    if (
        settings.VIBECODE_PREVIEW_PUBLIC
        and PreviewPort.objects.filter(session=session, port=port, public=True).exists()
    ):
        return PreviewDecision(True, 200, "public", **found)
    user_id = _cookie_user(cookie_value, session_public_id, port)
    if user_id is not None:
        owner = (
            get_user_model().objects.filter(pk=user_id, is_active=True).values_list("pk", flat=True).first()
        )
        if owner is not None and owner == session.owner_id:
            return PreviewDecision(True, 200, "owner", **found)
        _refuse(session_public_id, port, "not_owner")
        return PreviewDecision(False, 404, "not_owner")
    query = urlencode({"next": _safe_next(path)})
    redirect_url = f"{app_url()}/sessions/{session.public_id}/preview/{port}/?{query}"
    return PreviewDecision(False, 302, "handoff_needed", redirect_url=redirect_url)


# --- ports --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PortRow:
    port: int
    address: str
    pid: int | None
    process: str
    public: bool
    url: str


def preview_ports_live(*, session: Session) -> tuple[list[PortRow], bool]:
    """The ports listening in a running session (one row per port, the widest address first),
    with their stored public flags, and whether the helper cut the list short. Raises
    ``SandboxNotRunning`` (409) for a session that is not running."""
    if session.status != Session.Status.RUNNING:
        raise SandboxNotRunning(f"The session is {session.status}. Resume it to see its ports.")
    try:
        report = get_runtime().listening_ports(session_ref(session))
    except HelperGone:
        report = get_runtime().listening_ports(session_ref(session))  # once more, on a fresh helper
    public = set(PreviewPort.objects.filter(session=session, public=True).values_list("port", flat=True))
    public_on = settings.VIBECODE_PREVIEW_PUBLIC
    rank = {"0.0.0.0": 0, "::": 1}  # noqa: S104  (a server reachable on every address first)
    rows: dict[int, PortRow] = {}
    for item in sorted(report.ports, key=lambda p: (p.port, rank.get(p.address, 2), p.pid is None)):
        if item.port in RESERVED_PORTS or item.port in rows:
            continue
        rows[item.port] = PortRow(
            port=item.port,
            address=item.address,
            pid=item.pid,
            process=item.command,
            public=public_on and item.port in public,
            url=preview_url(session, item.port),
        )
    return list(rows.values()), report.truncated


def preview_port_set_public(
    *, session: Session, port: int, public: bool, actor: AbstractBaseUser | None = None
) -> PreviewPort:
    """Make ``port`` of ``session`` public (anyone with the link) or private again. Making it
    public while staff turned public previews off answers 403 ``public_previews_disabled``."""
    port = clean_port(port)
    if public and not settings.VIBECODE_PREVIEW_PUBLIC:
        _refuse(session.public_id, port, "public_previews_disabled")
        raise PublicPreviewsDisabled()
    with transaction.atomic():
        row, _ = PreviewPort.objects.select_for_update().get_or_create(session=session, port=port)
        if row.public != public:
            row.public = public
            row.save(update_fields=["public", "updated_at"])
    session_event_record(
        session=session, action=Audit.PUBLIC if public else Audit.PRIVATE, actor=actor, port=port
    )
    logger.info(
        "preview port %s of session %s made %s", port, session.public_id, "public" if public else "private"
    )
    return row


def preview_ports_make_private(*, rows: Any, actor: AbstractBaseUser | None = None) -> int:
    """Make the given ``PreviewPort`` rows private (the admin's action); returns how many changed."""
    changed = 0
    for row in rows:
        if row.public:
            preview_port_set_public(session=row.session, port=row.port, public=False, actor=actor)
            changed += 1
    return changed
