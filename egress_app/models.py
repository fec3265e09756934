"""The egress audit: one row per connection a sandbox made through the proxy (issue 14).

Rows are written by ``egress_app.services`` when a connection ends, read by staff in the admin,
and deleted after ``VIBECODE_EGRESS_AUDIT_DAYS`` by maintenance (``cleanup_egress``)."""

from __future__ import annotations

from django.db import models

from sessions_app.models import Session


class EgressConnection(models.Model):
    class Outcome(models.TextChoices):
        OK = "ok", "ok (tunnel or request finished)"
        REFUSED_HOST = "refused_host", "refused: host not allowed"
        REFUSED_ADDRESS = "refused_address", "refused: address refused"
        REFUSED_PORT = "refused_port", "refused: port not allowed"
        REFUSED_OFF = "refused_off", "refused: egress is off"
        BAD_REQUEST = "bad_request", "bad request"
        HEAD_TIMEOUT = "head_timeout", "request head too slow"
        UPSTREAM_ERROR = "upstream_error", "upstream unreachable"
        UPSTREAM_TIMEOUT = "upstream_timeout", "upstream connect timed out"
        IDLE_TIMEOUT = "idle_timeout", "closed when idle"
        BYTE_CAP = "byte_cap", "closed at the byte cap"
        LOST = "lost", "closed early (sandbox side or tunnel)"

    session = models.ForeignKey(
        Session, null=True, blank=True, on_delete=models.SET_NULL, related_name="egress_connections"
    )
    # Kept as text too, so that rows outlive the session.
    session_public_id = models.CharField(max_length=16, blank=True, db_index=True)
    method = models.CharField(max_length=16, blank=True)
    host = models.CharField(max_length=255, blank=True, db_index=True)
    port = models.PositiveIntegerField(null=True, blank=True)
    # The address connected to (one of those the policy checked); empty when none was.
    address = models.GenericIPAddressField(null=True, blank=True)
    outcome = models.CharField(max_length=24, choices=Outcome.choices, db_index=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    reason = models.CharField(max_length=300, blank=True)
    bytes_up = models.BigIntegerField(default=0, help_text="From the sandbox to the upstream.")
    bytes_down = models.BigIntegerField(default=0, help_text="From the upstream to the sandbox.")
    started_at = models.DateTimeField(db_index=True)
    duration = models.DurationField()

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.session_public_id} {self.method} {self.host}:{self.port} {self.outcome}"
