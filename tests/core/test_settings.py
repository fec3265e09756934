"""Settings fail loudly on bad values: each case starts a fresh interpreter with one bad variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def _load_settings(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; from django.conf import settings; django.setup(); print('ok')",
        ],
        cwd=REPO_ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "vibecode_project.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEBUG": "ture"}, "DEBUG='ture' is not a boolean"),
        ({"ACCESS_TOKEN_EXPIRE_MINUTES": "soon"}, "ACCESS_TOKEN_EXPIRE_MINUTES='soon' is not an integer"),
        ({"JWT_ALGORITHM": "none"}, "JWT_ALGORITHM='none' must be one of"),
        ({"VIBECODE_RATE_API": "lots"}, "VIBECODE_RATE_API='lots' is not a rate"),
        ({"VIBECODE_TRUSTED_PROXIES": "nginx"}, "'nginx' is not an IP address"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL must be"),
        ({"DEBUG": "false", "DJANGO_SECRET_KEY": ""}, "DJANGO_SECRET_KEY must be set when DEBUG is off"),
        ({"DEBUG": "false", "DJANGO_SECRET_KEY": "k" * 50, "JWT_SECRET": ""}, "JWT_SECRET must be set"),
    ],
)
def test_bad_values_stop_start_up_naming_the_variable(env, message):
    result = _load_settings(**env)
    assert result.returncode != 0
    assert message in result.stderr


def test_good_values_load(tmp_path):
    result = _load_settings(VIBECODE_VAR_DIR=str(tmp_path), VIBECODE_TRUSTED_PROXIES="10.0.0.0/8,::1")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "secret_key").exists(), "a development secret key is generated once into var/"
