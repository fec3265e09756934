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
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from assistant_app import selectors, services
from assistant_app.api.serializers import ChatInput, MessagesOutput, StatusOutput
from assistant_app.providers import assistant_status
from core_app.api.throttling import ApiRateThrottle, AssistantRateThrottle
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
