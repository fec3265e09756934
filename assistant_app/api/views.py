"""Assistant API: thin views over the services. Another user's session answers 404.

The chat answers newline-delimited JSON (``application/x-ndjson``), one event per line, sent as
the model writes: ``{"type": "delta", "text"}``..., then ``{"type": "done"}`` or
``{"type": "error", "code", "message"}``. Errors before the answer begins are ordinary JSON errors
with their status."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from assistant_app import selectors, services
from assistant_app.agent import selectors as agent_selectors
from assistant_app.agent import services as agent_services
from assistant_app.api.serializers import (
    AgentDecisionInput,
    AgentSettingsInput,
    AgentSettingsOutput,
    AgentStepOutput,
    AgentTurnInput,
    AgentTurnOutput,
    AgentTurnsOutput,
    AgentUndoInput,
    AgentUndoOutput,
    ChatInput,
    MessagesOutput,
    StatusOutput,
)
from assistant_app.models import AgentTurn
from assistant_app.providers import assistant_status
from core_app.api.schema import error_response
from core_app.api.throttling import AgentTurnRateThrottle, ApiRateThrottle, AssistantRateThrottle
from core_app.streaming import streaming_body
from sessions_app.api.views import SessionAPIView


def _ndjson(events: Iterator[dict]) -> Iterator[bytes]:
    for event in events:
        yield (json.dumps(event, ensure_ascii=False) + "\n").encode()


class AssistantStatusView(APIView):
    @extend_schema(responses=StatusOutput)
    def get(self, request: Request) -> Response:
        return Response(StatusOutput(asdict(assistant_status())).data)


class AssistantChatView(SessionAPIView):
    throttle_classes = [AssistantRateThrottle, ApiRateThrottle]

    @extend_schema(
        request=ChatInput,
        responses={
            (200, "application/x-ndjson"): OpenApiResponse(
                OpenApiTypes.STR, description="One JSON event per line: delta..., then done or error."
            )
        },
    )
    def post(self, request: Request, session_id: str) -> StreamingHttpResponse:
        session = self.get_session(request, session_id)
        data = ChatInput(data=request.data)
        data.is_valid(raise_exception=True)
        events = services.assistant_chat(session=session, request=data.to_request())
        # Pulled on the request's own thread: the answer is stored at its end.
        response = StreamingHttpResponse(
            streaming_body(request, _ndjson(events), thread_sensitive=True),
            content_type="application/x-ndjson",
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx: pass each line on as it comes
        return response


class AssistantMessagesView(SessionAPIView):
    @extend_schema(responses=MessagesOutput)
    def get(self, request: Request, session_id: str) -> Response:
        messages = selectors.conversation_messages(session=self.get_session(request, session_id))
        return Response(MessagesOutput({"messages": messages}).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, session_id: str) -> Response:
        services.conversation_clear(session=self.get_session(request, session_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- agent mode ----------------------------------------------------------------------------------


class EventStreamRenderer(BaseRenderer):
    """Lets ``Accept: text/event-stream`` through content negotiation; errors stay JSON."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):  # type: ignore[no-untyped-def]
        return b"" if data is None else JSONRenderer().render(data)


def _turn(turn: AgentTurn) -> dict:
    fresh = AgentTurn.objects.prefetch_related("steps").get(pk=turn.pk)
    return AgentTurnOutput(fresh).data  # type: ignore[return-value]


_AGENT_ERRORS = {
    409: error_response("`turn_busy`, `step_not_pending`, `session_not_running`."),
    503: error_response("`assistant_not_configured`."),
}


class AgentSettingsView(SessionAPIView):
    @extend_schema(responses=AgentSettingsOutput)
    def get(self, request: Request, session_id: str) -> Response:
        flags = agent_services.agent_settings_get(session=self.get_session(request, session_id))
        return Response(AgentSettingsOutput(flags).data)

    @extend_schema(
        request=AgentSettingsInput,
        responses={200: AgentSettingsOutput, 403: error_response("`auto_forbidden` by the server.")},
    )
    def put(self, request: Request, session_id: str) -> Response:
        data = AgentSettingsInput(data=request.data)
        data.is_valid(raise_exception=True)
        flags = agent_services.agent_settings_update(
            session=self.get_session(request, session_id), **data.validated_data
        )
        return Response(AgentSettingsOutput(flags).data)


class AgentTurnsView(SessionAPIView):
    def get_throttles(self):  # type: ignore[no-untyped-def]
        if self.request.method == "POST":
            return [AgentTurnRateThrottle(), ApiRateThrottle()]
        return super().get_throttles()

    @extend_schema(operation_id="vibecode_sessions_assistant_agent_turns_list", responses=AgentTurnsOutput)
    def get(self, request: Request, session_id: str) -> Response:
        turns = agent_selectors.agent_turns(session=self.get_session(request, session_id))
        return Response(AgentTurnsOutput({"turns": turns}).data)

    @extend_schema(request=AgentTurnInput, responses={201: AgentTurnOutput, **_AGENT_ERRORS})
    def post(self, request: Request, session_id: str) -> Response:
        data = AgentTurnInput(data=request.data)
        data.is_valid(raise_exception=True)
        turn = agent_services.agent_turn_start(
            session=self.get_session(request, session_id), user=request.user, goal=data.validated_data["goal"]
        )
        return Response(_turn(turn), status=status.HTTP_201_CREATED)


class AgentTurnDetailView(SessionAPIView):
    @extend_schema(operation_id="vibecode_sessions_assistant_agent_turn_detail", responses=AgentTurnOutput)
    def get(self, request: Request, session_id: str, turn_id: int) -> Response:
        turn = agent_selectors.agent_turn_get(session=self.get_session(request, session_id), turn_id=turn_id)
        return Response(_turn(turn))


AFTER = OpenApiParameter(
    "after", int, description="The version seen last (default 0: everything); a Last-Event-ID header wins."
)


class AgentTurnEventsView(SessionAPIView):
    renderer_classes = [JSONRenderer, EventStreamRenderer]

    @extend_schema(parameters=[AFTER], responses={(200, "text/event-stream"): str})
    def get(self, request: Request, session_id: str, turn_id: int) -> StreamingHttpResponse:
        raw = request.headers.get("Last-Event-ID") or request.query_params.get("after") or "0"
        if not raw.isdigit() or len(raw) > 18:
            raise exceptions.ValidationError({"after": ["A version: a whole number, 0 or more."]})
        events = agent_selectors.agent_turn_events(
            session=self.get_session(request, session_id),
            turn_id=turn_id,
            after=int(raw),
            render_step=lambda step: AgentStepOutput(step).data,  # type: ignore[arg-type,return-value]
            render_turn=lambda turn: {
                key: value for key, value in AgentTurnOutput(turn).data.items() if key != "steps"
            },
        )
        # Pulled on worker threads: the stream sleeps between polls and must not hold the
        # request thread; it closes each database connection it opens (see the selector).
        response = StreamingHttpResponse(streaming_body(request, events), content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response


class AgentStepDecisionView(SessionAPIView):
    @extend_schema(request=AgentDecisionInput, responses={200: AgentStepOutput, **_AGENT_ERRORS})
    def post(self, request: Request, session_id: str, turn_id: int, index: int) -> Response:
        data = AgentDecisionInput(data=request.data)
        data.is_valid(raise_exception=True)
        step = agent_services.agent_step_decide(
            session=self.get_session(request, session_id), turn_id=turn_id, index=index, **data.validated_data
        )
        return Response(AgentStepOutput(step).data)


class AgentTurnStopView(SessionAPIView):
    @extend_schema(request=None, responses=AgentTurnOutput)
    def post(self, request: Request, session_id: str, turn_id: int) -> Response:
        turn = agent_services.agent_turn_stop(session=self.get_session(request, session_id), turn_id=turn_id)
        return Response(_turn(turn))


class AgentTurnUndoView(SessionAPIView):
    @extend_schema(request=AgentUndoInput, responses={200: AgentUndoOutput, **_AGENT_ERRORS})
    def post(self, request: Request, session_id: str, turn_id: int) -> Response:
        data = AgentUndoInput(data=request.data)
        data.is_valid(raise_exception=True)
        undone = agent_services.agent_turn_undo(
            session=self.get_session(request, session_id),
            user=request.user,
            turn_id=turn_id,
            force=data.validated_data["force"],
        )
        undone["turn"] = AgentTurn.objects.prefetch_related("steps").get(pk=undone["turn"].pk)
        return Response(AgentUndoOutput(undone).data)
