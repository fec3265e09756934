"""Previews: which ports of a session its owner made public. A port with no row is private."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from sessions_app.models import Session


class PreviewPort(models.Model):
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="preview_ports")
    port = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(65535)])
    # Anyone with the link may open a public port (unless staff turned public previews off).
    public = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["session_id", "port"]
        constraints = [
            models.UniqueConstraint(fields=["session", "port"], name="preview_port_unique"),
            models.CheckConstraint(
                condition=models.Q(port__gte=1, port__lte=65535), name="preview_port_in_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.session.public_id}:{self.port} ({'public' if self.public else 'private'})"
