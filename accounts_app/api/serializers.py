from __future__ import annotations

from django.contrib.auth import get_user_model
from rest_framework import serializers

from accounts_app.models import EditorSettings


class LoginInput(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)


class TokenPairOutput(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class RefreshInput(serializers.Serializer):
    refresh = serializers.CharField(max_length=4096)


class RegisterInput(serializers.Serializer):
    username = serializers.RegexField(r"^[\w.@+-]+\Z", max_length=150)
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)

    def validate_username(self, value: str) -> str:
        if get_user_model().objects.filter(username__iexact=value).exists():
            raise serializers.ValidationError("That username is taken.", code="username_taken")
        return value


class MeOutput(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.EmailField()
    is_staff = serializers.BooleanField()


EDITOR_SETTING_FIELDS = [
    "tab_size",
    "insert_spaces",
    "word_wrap",
    "minimap",
    "font_size",
    "theme",
    "autosave",
    "autosave_delay_ms",
]


class EditorSettingsInput(serializers.ModelSerializer):
    """Any of the settings; those left out keep their value."""

    class Meta:
        model = EditorSettings
        fields = EDITOR_SETTING_FIELDS


class EditorSettingsOutput(serializers.ModelSerializer):
    class Meta:
        model = EditorSettings
        fields = [*EDITOR_SETTING_FIELDS, "updated_at"]
