"""Per-user preferences. Users themselves are Django's ``auth.User``."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

TAB_SIZE_RANGE = (1, 8)
FONT_SIZE_RANGE = (8, 32)
AUTOSAVE_DELAY_RANGE_MS = (200, 60_000)


class EditorSettings(models.Model):
    """The editor as one user likes it, in every workspace and browser. A user without a row
    gets the field defaults (``accounts_app.selectors.editor_settings_get``)."""

    class Theme(models.TextChoices):
        SYSTEM = "system", "Follow the OS"
        LIGHT = "light", "Light"
        DARK = "dark", "Dark"

    class Autosave(models.TextChoices):
        # The names of VS Code's files.autoSave values, so its users recognise them.
        OFF = "off", "Off"
        AFTER_DELAY = "afterDelay", "After a delay"
        ON_FOCUS_CHANGE = "onFocusChange", "When the editor loses focus"

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="editor_settings"
    )
    tab_size = models.PositiveSmallIntegerField(
        default=4, validators=[MinValueValidator(TAB_SIZE_RANGE[0]), MaxValueValidator(TAB_SIZE_RANGE[1])]
    )
    insert_spaces = models.BooleanField(default=True)
    word_wrap = models.BooleanField(default=False)
    minimap = models.BooleanField(default=False)
    font_size = models.PositiveSmallIntegerField(
        default=14, validators=[MinValueValidator(FONT_SIZE_RANGE[0]), MaxValueValidator(FONT_SIZE_RANGE[1])]
    )
    theme = models.CharField(max_length=8, choices=Theme.choices, default=Theme.SYSTEM)
    autosave = models.CharField(max_length=16, choices=Autosave.choices, default=Autosave.OFF)
    autosave_delay_ms = models.PositiveIntegerField(
        default=1000,
        validators=[
            MinValueValidator(AUTOSAVE_DELAY_RANGE_MS[0]),
            MaxValueValidator(AUTOSAVE_DELAY_RANGE_MS[1]),
        ],
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Editor settings of {self.user}"
