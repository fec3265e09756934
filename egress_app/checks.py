"""System checks of package egress: the CA bundle given to sandboxes must be readable."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register


@register("vibecode")
def check_sandbox_ca_bundle(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    path = settings.VIBECODE_SANDBOX_CA_BUNDLE
    if not path or (os.path.isfile(path) and os.access(path, os.R_OK)):
        return []
    return [
        Error(
            f"VIBECODE_SANDBOX_CA_BUNDLE={path} is not a readable file.",
            hint="Point it at a PEM bundle (e.g. /etc/ssl/certs/ca-certificates.crt) that exists on "
            "this host and on the Docker engine's host, or leave it empty.",
            id="vibecode.E014",
        )
    ]
