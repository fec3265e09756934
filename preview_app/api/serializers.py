from __future__ import annotations

from rest_framework import serializers


class PreviewPortOutput(serializers.Serializer):
    port = serializers.IntegerField()
    address = serializers.CharField(help_text="127.0.0.1, 0.0.0.0, :: ... as the socket is bound.")
    pid = serializers.IntegerField(allow_null=True, help_text="Null when the owner cannot be seen.")
    process = serializers.CharField(help_text="The owning process's command line, cut at 200 characters.")
    public = serializers.BooleanField()
    url = serializers.CharField(help_text="The port's preview origin.")


class PreviewPortsOutput(serializers.Serializer):
    ports = PreviewPortOutput(many=True)
    truncated = serializers.BooleanField(help_text="More ports listen than are listed.")
    public_previews = serializers.BooleanField(help_text="False: staff turned public previews off.")


class PreviewPortUpdateInput(serializers.Serializer):
    public = serializers.BooleanField()


class PreviewPortUpdateOutput(serializers.Serializer):
    port = serializers.IntegerField()
    public = serializers.BooleanField()
    url = serializers.CharField()
