"""Reads about users: their editor settings."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from accounts_app.models import EditorSettings


def editor_settings_get(*, user: AbstractBaseUser | AnonymousUser) -> EditorSettings:
    """The user's editor settings; an unsaved row of defaults for a user who never changed them."""
    return EditorSettings.objects.filter(user_id=user.pk).first() or EditorSettings(user_id=user.pk)
