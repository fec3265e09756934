"""Terminal API: tickets for the WebSocket, and the list and close of a session's terminals."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from sessions_app.api.views import SessionAPIView
from terminal_app import services
from terminal_app.tickets import TICKET_TTL_SECONDS, ticket_issue


class TicketView(SessionAPIView):
    @extend_schema(
        request=None,
        responses=inline_serializer(
            "Ticket", {"ticket": serializers.CharField(), "expires_in": serializers.IntegerField()}
        ),
    )
    def post(self, request: Request, session_id: str) -> Response:
        session = self.get_session(request, session_id)
        ticket = ticket_issue(user_id=request.user.pk, session_public_id=session.public_id)
        return Response({"ticket": ticket, "expires_in": TICKET_TTL_SECONDS})


class TerminalListView(SessionAPIView):
    @extend_schema(
        responses=inline_serializer(
            "Terminal",
            {
                "terminal_id": serializers.CharField(),
                "created": serializers.IntegerField(),
                "attached": serializers.IntegerField(),
            },
            many=True,
        )
    )
    def get(self, request: Request, session_id: str) -> Response:
        return Response(services.terminal_list(session=self.get_session(request, session_id)))


class TerminalDetailView(SessionAPIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, session_id: str, terminal_id: str) -> Response:
        session = self.get_session(request, session_id)
        services.terminal_id_check(terminal_id)
        if not services.terminal_close(session=session, terminal_id=terminal_id):
            return Response(
                {"detail": f"No terminal {terminal_id}.", "code": "terminal_not_found"}, status=404
            )
        return Response(status=status.HTTP_204_NO_CONTENT)
