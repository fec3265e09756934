"""Previews API: a session's listening ports and their public/private flags. Thin views over
``preview_app.services``; another user's session answers 404 (the selector does not find it)."""

from __future__ import annotations

from dataclasses import asdict

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from core_app.api.throttling import RatelimitThrottle
from preview_app import services
from preview_app.api.serializers import (
    PreviewPortsOutput,
    PreviewPortUpdateInput,
    PreviewPortUpdateOutput,
)
from sessions_app.api.views import SessionAPIView


class PortsRateThrottle(RatelimitThrottle):
    """Port listings (``VIBECODE_RATE_PORTS``): the Ports panel polls them, so they are counted
    apart from the general API limit that saves and runs share."""

    group = "ports"
    rate_setting = "VIBECODE_RATE_PORTS"


class PreviewPortsView(SessionAPIView):
    throttle_classes = [PortsRateThrottle]

    @extend_schema(responses=PreviewPortsOutput)
    def get(self, request: Request, session_id: str) -> Response:
        rows, truncated = services.preview_ports_live(session=self.get_session(request, session_id))
        data = {
            "ports": [asdict(row) for row in rows],
            "truncated": truncated,
            "public_previews": settings.VIBECODE_PREVIEW_PUBLIC,
        }
        return Response(PreviewPortsOutput(data).data)


class PreviewPortView(SessionAPIView):
    @extend_schema(request=PreviewPortUpdateInput, responses=PreviewPortUpdateOutput)
    def patch(self, request: Request, session_id: str, port: str) -> Response:
        session = self.get_session(request, session_id)
        data = PreviewPortUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        row = services.preview_port_set_public(
            session=session,
            port=services.clean_port(port),
            public=data.validated_data["public"],
            actor=request.user,
        )
        body = {"port": row.port, "public": row.public, "url": services.preview_url(session, row.port)}
        return Response(PreviewPortUpdateOutput(body).data)
