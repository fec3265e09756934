"""Sessions API: thin views over the services. Someone else's session answers 404."""

from __future__ import annotations

from dataclasses import asdict

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core_app import logging as log_context
from core_app.api.errors import validation_detail
from core_app.api.schema import error_response
from sessions_app import selectors, services, workbench
from sessions_app.api.serializers import (
    SessionCreateInput,
    SessionOutput,
    SessionResumeInput,
    StatsOutput,
    WorkbenchStateInput,
    WorkbenchStateOutput,
)
from sessions_app.errors import InvalidWorkbenchState
from sessions_app.models import Session


class SessionAPIView(APIView):
    """Base for endpoints under ``/api/vibecode/sessions/{session_id}``."""

    def get_session(self, request: Request, session_id: str) -> Session:
        session = selectors.session_get(user=request.user, public_id=session_id)
        log_context.user_id.set(str(request.user.pk))
        log_context.session_id.set(session.public_id)
        return session


def _create(request: Request) -> Response:
    data = SessionCreateInput(data=request.data)
    data.is_valid(raise_exception=True)
    wait = data.validated_data["wait"]
    session = services.session_create(
        user=request.user, name=data.validated_data.get("name") or None, wait=wait
    )
    return Response(
        SessionOutput(session).data, status=status.HTTP_201_CREATED if wait else status.HTTP_202_ACCEPTED
    )


_CREATE_ERRORS = {
    403: error_response("The user's session quota is used up (`code`: `quota_exceeded`)."),
    503: error_response("Docker or the sandbox image is unavailable (`code`: `runtime_unavailable`)."),
}


class SessionListView(APIView):
    @extend_schema(responses=SessionOutput(many=True))
    def get(self, request: Request) -> Response:
        return Response(SessionOutput(selectors.session_list(user=request.user), many=True).data)

    @extend_schema(
        request=SessionCreateInput,
        responses={201: SessionOutput, 202: SessionOutput, **_CREATE_ERRORS},
        description=(
            "Create a session and start its container (`status` is `running` when it answers). "
            'With `"wait": false` it answers 202 as soon as the session is claimed (`creating`) and '
            "starts the container in the background: poll the session until it is `running`, or "
            "`error` with `last_error`. Quota refusals answer at once either way."
        ),
    )
    def post(self, request: Request) -> Response:
        return _create(request)


class SessionCreateView(APIView):
    """The seed's path for creating a session, kept for its clients: same as ``POST /sessions``."""

    @extend_schema(
        request=SessionCreateInput,
        responses={201: SessionOutput, 202: SessionOutput, **_CREATE_ERRORS},
        deprecated=True,
        description="Same as `POST /api/vibecode/sessions`, kept for existing clients.",
    )
    def post(self, request: Request) -> Response:
        return _create(request)


class SessionDetailView(SessionAPIView):
    @extend_schema(responses=SessionOutput)
    def get(self, request: Request, session_id: str) -> Response:
        return Response(SessionOutput(self.get_session(request, session_id)).data)

    @extend_schema(
        parameters=[OpenApiParameter("force", bool, description="Required to delete a running session.")],
        responses={204: None},
    )
    def delete(self, request: Request, session_id: str) -> Response:
        force = request.query_params.get("force", "").lower() in {"1", "true", "yes"}
        services.session_delete(
            session=self.get_session(request, session_id), actor=request.user, force=force
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class SessionSuspendView(SessionAPIView):
    @extend_schema(request=None, responses=SessionOutput)
    def post(self, request: Request, session_id: str) -> Response:
        session = services.session_suspend(session=self.get_session(request, session_id), actor=request.user)
        return Response(SessionOutput(session).data)


class SessionResumeView(SessionAPIView):
    @extend_schema(
        request=SessionResumeInput,
        responses={200: SessionOutput, 202: SessionOutput},
        description=(
            'Start the session again. With `"wait": false` it answers 202 once the resume is claimed '
            "(`resuming`) and starts in the background; a failure puts the session back as it was, "
            "with `last_error`."
        ),
    )
    def post(self, request: Request, session_id: str) -> Response:
        data = SessionResumeInput(data=request.data if isinstance(request.data, dict) else {})
        data.is_valid(raise_exception=True)
        wait = data.validated_data["wait"]
        session = services.session_resume(
            session=self.get_session(request, session_id), actor=request.user, wait=wait
        )
        accepted = session.status == Session.Status.RESUMING
        return Response(SessionOutput(session).data, status=status.HTTP_202_ACCEPTED if accepted else 200)


class SessionKeepaliveView(SessionAPIView):
    @extend_schema(request=None, responses=SessionOutput)
    def post(self, request: Request, session_id: str) -> Response:
        session = services.session_keepalive(session=self.get_session(request, session_id))
        return Response(SessionOutput(session).data)


class SessionStatsView(SessionAPIView):
    @extend_schema(responses=StatsOutput)
    def get(self, request: Request, session_id: str) -> Response:
        stats = services.session_stats(session=self.get_session(request, session_id))
        return Response(StatsOutput(asdict(stats)).data)


class WorkbenchView(SessionAPIView):
    """The IDE's saved layout of this session: ``GET`` it on load, ``PUT`` it as it changes."""

    @extend_schema(responses=WorkbenchStateOutput)
    def get(self, request: Request, session_id: str) -> Response:
        state, row = workbench.workbench_get(session=self.get_session(request, session_id))
        return Response(WorkbenchStateOutput({**state, "updated_at": row.updated_at if row else None}).data)

    @extend_schema(request=WorkbenchStateInput, responses=WorkbenchStateOutput)
    def put(self, request: Request, session_id: str) -> Response:
        session = self.get_session(request, session_id)
        if not isinstance(request.data, dict):
            raise InvalidWorkbenchState("The workbench state must be a JSON object.")
        data = WorkbenchStateInput(data=request.data)
        if not data.is_valid():
            raise InvalidWorkbenchState(validation_detail(data.errors), errors=data.errors)
        row = workbench.workbench_save(session=session, state=dict(data.validated_data))
        return Response(WorkbenchStateOutput({**row.state, "updated_at": row.updated_at}).data)
