from __future__ import annotations

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import CommandError, call_command
from django.test import override_settings

pytestmark = pytest.mark.django_db


@override_settings(DEBUG=True)
def test_create_test_user_is_safe_to_run_twice(capsys):
    call_command("create_test_user")
    call_command("create_test_user")
    assert get_user_model().objects.filter(username="testuser").count() == 1
    assert authenticate(username="testuser", password="testpass123") is not None
    assert "Already present" in capsys.readouterr().out


@override_settings(DEBUG=False)
def test_create_test_user_refuses_without_debug_unless_forced():
    with pytest.raises(CommandError, match="DEBUG is off"):
        call_command("create_test_user")
    call_command("create_test_user", "--force")
    assert get_user_model().objects.filter(username="testuser").exists()


def test_ensure_admin_creates_one_staff_user_once(capsys):
    call_command("ensure_admin")
    out = capsys.readouterr().out
    password = out.split("with password '")[1].split("'")[0]
    assert authenticate(username="admin", password=password).is_staff
    call_command("ensure_admin")
    assert "already exists" in capsys.readouterr().out
    assert get_user_model().objects.filter(is_staff=True).count() == 1


def test_check_schema_passes_when_migrated(capsys):
    call_command("check_schema")
    assert "up to date" in capsys.readouterr().out
