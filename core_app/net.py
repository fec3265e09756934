"""Who is the client? ``REMOTE_ADDR``, unless a trusted proxy says otherwise."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def _trusted(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in settings.VIBECODE_TRUSTED_PROXIES)


def client_ip(request: HttpRequest) -> str:
    """The client's IP address for rate limits and audit logs.

    ``X-Forwarded-For`` is believed only when the direct peer is a proxy listed in
    ``VIBECODE_TRUSTED_PROXIES``; then the right-most address that is not itself a trusted proxy
    is the client. Anyone else's ``X-Forwarded-For`` is ignored, so spoofing it changes nothing.
    """
    remote = request.META.get("REMOTE_ADDR") or "unknown"
    if not _trusted(remote):
        return remote
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return remote
    return remote
