from __future__ import annotations

from rest_framework import serializers

from sessions_app.models import Session
from sessions_app.selectors import session_idle_deadline
from sessions_app.services import MAX_NAME_LENGTH
from sessions_app.specs import disk_mb


class SessionCreateInput(serializers.Serializer):
    # The length and character checks live in the service (clean_session_name), so the API,
    # the pages and the admin refuse the same names with the same words.
    name = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, max_length=10 * MAX_NAME_LENGTH
    )


class SessionOutput(serializers.ModelSerializer):
    session_id = serializers.CharField(source="public_id")
    idle_deadline = serializers.SerializerMethodField()
    disk_mb = serializers.SerializerMethodField()

    class Meta:
        model = Session
        fields = [
            "session_id",
            "name",
            "status",
            "container_name",
            "volume_name",
            "image",
            "runtime",
            "limits",
            "disk_mb",
            "created_at",
            "last_activity_at",
            "idle_deadline",
            "last_error",
        ]

    def get_disk_mb(self, session: Session) -> int | None:
        """The workspace's hard disk quota in MB; null for a volume without one."""
        return disk_mb(session)

    def get_idle_deadline(self, session: Session) -> str | None:
        if session.status != Session.Status.RUNNING:
            return None
        return session_idle_deadline(session).isoformat()


class StatsOutput(serializers.Serializer):
    cpu_percent = serializers.FloatField()
    memory_bytes = serializers.IntegerField()
    memory_limit_bytes = serializers.IntegerField()
    pids = serializers.IntegerField()
    # Bytes used in the workspace and its quota; null for a workspace without a disk quota.
    disk_bytes = serializers.IntegerField(allow_null=True)
    disk_limit_bytes = serializers.IntegerField(allow_null=True)
