"""Writes about users: registration, the development/first-run accounts and editor settings."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AbstractUser
from django.contrib.auth.password_validation import validate_password
from django.db import transaction

from accounts_app.models import EditorSettings

TEST_USER = {"username": "testuser", "password": "testpass123", "email": "test@example.com"}


def user_register(*, username: str, email: str, password: str) -> AbstractUser:
    """Create an ordinary user. Password rules are Django's validators; raises ValidationError."""
    User = get_user_model()
    user = User(username=username, email=email)
    validate_password(password, user=user)
    user.set_password(password)
    user.full_clean()
    user.save()
    return user


def user_ensure_test_user() -> tuple[AbstractUser, bool]:
    """The seed guide's ``testuser``; returns (user, created). Safe to call twice."""
    User = get_user_model()
    with transaction.atomic():
        user, created = User.objects.get_or_create(
            username=TEST_USER["username"], defaults={"email": TEST_USER["email"]}
        )
        if created:
            user.set_password(TEST_USER["password"])
            user.save(update_fields=["password"])
    return user, created


def user_ensure_first_admin(*, username: str = "admin") -> tuple[AbstractUser, str] | None:
    """Create a staff superuser with a random password when there is no staff user yet.

    Returns (user, password) when it created one, and None when staff already exists: the
    password is shown once, by the caller, and never stored in clear anywhere.
    """
    User = get_user_model()
    with transaction.atomic():
        if User.objects.filter(is_staff=True).exists():
            return None
        password = secrets.token_urlsafe(12)
        user = User.objects.create_superuser(username=username, email="", password=password)
    return user, password


def editor_settings_update(*, user: AbstractBaseUser, changes: dict[str, Any]) -> EditorSettings:
    """Change some of the user's editor settings (already validated; others keep their value)."""
    with transaction.atomic():
        row, _ = EditorSettings.objects.select_for_update().get_or_create(user_id=user.pk)
        for field, value in changes.items():
            setattr(row, field, value)
        row.save()
    return row
