"""What a sandbox is made with for egress: proxy variables, the CA bundle and its mount (pure
spec functions, no Docker), and the system check on the bundle."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from sessions_app import specs
from sessions_app.models import Session
from sessions_app.runtime.docker import docker_create_kwargs

PROXY = "http://127.0.0.1:3128"


def _session() -> Session:
    return Session(
        public_id="abcdefgh23",
        owner_id=7,
        name="demo",
        container_name="vibecode-7-abcdefgh23",
        volume_name="vibecode-7-abcdefgh23-ws",
        image="vibecode-sandbox:latest",
        runtime="runc",
        limits={"memory_mb": 2048, "cpus": 1.5, "pids": 512},
    )


@override_settings(VIBECODE_EGRESS="allowlist", VIBECODE_SANDBOX_CA_BUNDLE="")
def test_with_egress_on_every_client_is_pointed_at_the_proxy():
    env = docker_create_kwargs(specs.sandbox_spec(_session()))["environment"]
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        assert env[name] == PROXY
    assert env["npm_config_proxy"] == env["npm_config_https_proxy"] == PROXY
    assert env["NO_PROXY"] == env["no_proxy"] == "localhost,127.0.0.1,::1"
    assert "SSL_CERT_FILE" not in env and "PIP_CERT" not in env
    assert env["HOME"] == specs.SANDBOX_HOME  # the rest is as it was


@override_settings(VIBECODE_EGRESS="off", VIBECODE_SANDBOX_CA_BUNDLE="/etc/ssl/certs/ca-certificates.crt")
def test_with_egress_off_no_proxy_and_no_bundle():
    kwargs = docker_create_kwargs(specs.sandbox_spec(_session()))
    assert not [name for name in kwargs["environment"] if "proxy" in name.lower()]
    assert "SSL_CERT_FILE" not in kwargs["environment"]
    assert list(kwargs["volumes"]) == ["vibecode-7-abcdefgh23-ws"]


@override_settings(VIBECODE_EGRESS="allowlist", VIBECODE_SANDBOX_CA_BUNDLE="/srv/ca/bundle.pem")
def test_a_ca_bundle_is_mounted_read_only_and_trusted_by_every_client():
    kwargs = docker_create_kwargs(specs.sandbox_spec(_session()))
    assert kwargs["volumes"]["/srv/ca/bundle.pem"] == {"bind": specs.SANDBOX_CA_BUNDLE, "mode": "ro"}
    assert kwargs["volumes"]["vibecode-7-abcdefgh23-ws"] == {"bind": "/workspace", "mode": "rw"}
    env = kwargs["environment"]
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO"):
        assert env[name] == specs.SANDBOX_CA_BUNDLE


@pytest.mark.parametrize(("path", "errors"), [("", 0), (__file__, 0), ("/no/ca.pem", 1), ("/etc", 1)])
def test_an_unreadable_bundle_is_a_system_check_error(settings, path, errors):
    settings.VIBECODE_SANDBOX_CA_BUNDLE = path
    found = [m for m in run_checks(tags=["vibecode"]) if m.id == "vibecode.E014"]
    assert len(found) == errors
