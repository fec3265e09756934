"""Workspace API: files and execution in a session's /workspace. Thin views over the services;
another user's session answers 404 (the selector does not find it)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import asdict
from urllib.parse import quote

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.parsers import MultiPartParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from core_app.api.throttling import ApiRateThrottle, ExecRateThrottle, SaveRateThrottle
from core_app.errors import DomainError
from core_app.streaming import streaming_body
from sessions_app.api.views import SessionAPIView
from workspace_app import runs, search, services
from workspace_app.api.serializers import (
    CreateInput,
    EntryOutput,
    ExecInput,
    ExecOutput,
    FileContentOutput,
    FileSaveInput,
    ListingOutput,
    MoveInput,
    QuickOpenOutput,
    ReplaceInput,
    ReplaceOutput,
    RunInfoOutput,
    RunInput,
    RunInputInput,
    RunInputOutput,
    RunListOutput,
    RunStartInput,
    SavedOutput,
    SearchOutput,
    TextSearchInput,
    TextSearchOutput,
)

PATH = OpenApiParameter("path", str, description="Relative to /workspace; empty or '.' is the root.")


def _path(request: Request, *, required: bool = True) -> str:
    path = request.query_params.get("path")
    if path is None:
        if required:
            raise exceptions.ValidationError({"path": ["This query parameter is required."]})
        return ""
    return path


def _exec_response(result: object) -> Response:
    data = asdict(result)  # type: ignore[call-overload]
    data["stdout"] = data["stdout"].decode("utf-8", "replace")
    data["stderr"] = data["stderr"].decode("utf-8", "replace")
    return Response(ExecOutput(data).data)


class FilesView(SessionAPIView):
    @extend_schema(parameters=[PATH], responses=ListingOutput)
    def get(self, request: Request, session_id: str) -> Response:
        session = self.get_session(request, session_id)
        return Response(
            ListingOutput(services.workspace_list(session=session, path=_path(request, required=False))).data
        )

    @extend_schema(request=CreateInput, responses={201: EntryOutput})
    def post(self, request: Request, session_id: str) -> Response:
        data = CreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        entry = services.workspace_create(
            session=self.get_session(request, session_id),
            path=data.validated_data["path"],
            kind=data.validated_data["type"],
        )
        return Response(EntryOutput(entry).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[PATH], responses={204: None})
    def delete(self, request: Request, session_id: str) -> Response:
        services.workspace_delete(session=self.get_session(request, session_id), path=_path(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class FileContentView(SessionAPIView):
    def get_throttles(self):  # type: ignore[no-untyped-def]
        if self.request.method == "PUT":
            return [SaveRateThrottle(), ApiRateThrottle()]
        return super().get_throttles()

    @extend_schema(parameters=[PATH], responses=FileContentOutput)
    def get(self, request: Request, session_id: str) -> Response:
        content = services.workspace_read(session=self.get_session(request, session_id), path=_path(request))
        return Response(FileContentOutput(content).data)

    @extend_schema(request=FileSaveInput, responses=SavedOutput)
    def put(self, request: Request, session_id: str) -> Response:
        data = FileSaveInput(data=request.data)
        data.is_valid(raise_exception=True)
        if data.validated_data["encoding"] == "base64":
            try:
                content = base64.b64decode(data.validated_data["content"], validate=True)
            except (binascii.Error, ValueError):
                raise exceptions.ValidationError({"content": ["This is not valid base64."]}) from None
        else:
            content = data.validated_data["content"].encode("utf-8", "surrogatepass")
        if len(content) > settings.VIBECODE_MAX_EDIT_BYTES:
            raise exceptions.ValidationError(
                {
                    "content": [
                        f"The file is over {settings.VIBECODE_MAX_EDIT_BYTES} bytes; upload it instead."
                    ]
                }
            )
        saved = services.workspace_write(
            session=self.get_session(request, session_id),
            path=data.validated_data["path"],
            content=content,
            etag=data.validated_data.get("etag"),
        )
        return Response(SavedOutput(saved).data)


class FileMoveView(SessionAPIView):
    @extend_schema(request=MoveInput, responses=EntryOutput)
    def post(self, request: Request, session_id: str) -> Response:
        data = MoveInput(data=request.data)
        data.is_valid(raise_exception=True)
        moved = services.workspace_move(
            session=self.get_session(request, session_id),
            source=data.validated_data["from"],
            target=data.validated_data["to"],
        )
        return Response(EntryOutput(moved).data)


class FileUploadView(SessionAPIView):
    """Multipart: ``files`` (one or more), ``path`` (destination folder), and optionally one
    ``relative_paths`` per file to keep a dropped folder's structure."""

    parser_classes = [MultiPartParser]

    @extend_schema(
        request={
            "multipart/form-data": {
                "type": "object",
                "properties": {
                    "path": {"type": "string"},
                    "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                    "relative_paths": {"type": "array", "items": {"type": "string"}},
                },
            }
        },
        responses={201: SavedOutput(many=True)},
    )
    def post(self, request: Request, session_id: str) -> Response:
        # Refuse before reading a byte of the body.
        services.check_upload_size(int(request.META.get("CONTENT_LENGTH") or 0))
        session = self.get_session(request, session_id)
        files = request.FILES.getlist("files")
        if not files:
            raise exceptions.ValidationError({"files": ["Attach at least one file."]})
        names = request.data.getlist("relative_paths") or [f.name for f in files]
        if len(names) != len(files):
            raise exceptions.ValidationError(
                {"relative_paths": ["Give one relative path per file, or none."]}
            )
        uploads = [
            services.Upload(relative_path=name, size=f.size, chunks=f.chunks(256 * 1024))
            for name, f in zip(names, files, strict=True)
        ]
        saved = services.workspace_upload(
            session=session,
            directory=request.data.get("path", ""),
            uploads=uploads,
            overwrite=str(request.data.get("overwrite", "")).lower() in {"1", "true", "yes", "on"},
        )
        return Response(SavedOutput(saved, many=True).data, status=status.HTTP_201_CREATED)


class FileDownloadView(SessionAPIView):
    @extend_schema(parameters=[PATH], responses={(200, "application/octet-stream"): bytes})
    def get(self, request: Request, session_id: str) -> StreamingHttpResponse:
        download = services.workspace_download(
            session=self.get_session(request, session_id), path=_path(request)
        )
        # Under ASGI stream asynchronously; the test client (WSGI) takes the plain iterator.
        body = streaming_body(request, download.chunks)
        response = StreamingHttpResponse(body, content_type=download.content_type)
        response["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(download.filename)}"
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "sandbox"
        return response


class FileSearchView(SessionAPIView):
    """The first search: a case-insensitive substring (kept for its clients; see SearchView)."""

    @extend_schema(parameters=[OpenApiParameter("q", str, required=True), PATH], responses=SearchOutput)
    def get(self, request: Request, session_id: str) -> Response:
        query = request.query_params.get("q", "")
        if not query or len(query) > 200:
            raise DomainError("Search for 1 to 200 characters.", code="invalid_query")
        found = search.search_text(
            session=self.get_session(request, session_id), query=query, path=_path(request, required=False)
        )
        return Response(SearchOutput(found).data)


class SearchView(SessionAPIView):
    @extend_schema(request=TextSearchInput, responses=TextSearchOutput)
    def post(self, request: Request, session_id: str) -> Response:
        data = TextSearchInput(data=request.data)
        data.is_valid(raise_exception=True)
        found = search.search_text(session=self.get_session(request, session_id), **data.validated_data)
        return Response(TextSearchOutput(found).data)


class QuickOpenView(SessionAPIView):
    @extend_schema(responses=QuickOpenOutput)
    def get(self, request: Request, session_id: str) -> Response:
        found = search.search_files(session=self.get_session(request, session_id))
        return Response(QuickOpenOutput(found).data)


class ReplaceView(SessionAPIView):
    """Preview (``apply: false``) or apply a replacement in the files a search found."""

    def get_throttles(self):  # type: ignore[no-untyped-def]
        data = self.request.data
        if isinstance(data, dict) and data.get("apply") is True:  # applying saves files
            return [SaveRateThrottle(), ApiRateThrottle()]
        return super().get_throttles()

    @extend_schema(request=ReplaceInput, responses=ReplaceOutput)
    def post(self, request: Request, session_id: str) -> Response:
        data = ReplaceInput(data=request.data)
        data.is_valid(raise_exception=True)
        done = search.search_replace(session=self.get_session(request, session_id), **data.validated_data)
        return Response(ReplaceOutput(done).data)


class ExecView(SessionAPIView):
    throttle_classes = [ExecRateThrottle, ApiRateThrottle]

    @extend_schema(request=ExecInput, responses=ExecOutput)
    def post(self, request: Request, session_id: str) -> Response:
        data = ExecInput(data=request.data)
        data.is_valid(raise_exception=True)
        args = data.validated_data
        argv = args["argv"] if "argv" in args else services.parse_command(args["command"])
        result = services.workspace_exec(
            session=self.get_session(request, session_id),
            argv=argv,
            timeout=args.get("timeout"),
            stdin=args.get("stdin"),
            cwd=args.get("cwd", ""),
        )
        return _exec_response(result)


class RunView(SessionAPIView):
    throttle_classes = [ExecRateThrottle, ApiRateThrottle]

    @extend_schema(request=RunInput, responses=ExecOutput)
    def post(self, request: Request, session_id: str) -> Response:
        data = RunInput(data=request.data)
        data.is_valid(raise_exception=True)
        args = data.validated_data
        result = services.workspace_run(
            session=self.get_session(request, session_id),
            path=args["path"],
            args=args.get("args"),
            stdin=args.get("stdin"),
            timeout=args.get("timeout"),
        )
        return _exec_response(result)


# --- streaming runs ---------------------------------------------------------------------------


class EventStreamRenderer(BaseRenderer):
    """Lets ``Accept: text/event-stream`` (what ``EventSource`` sends) through content
    negotiation; an error before the stream starts is still the JSON ``{detail, code}``."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):  # type: ignore[no-untyped-def]
        return b"" if data is None else JSONRenderer().render(data)


def _run_info(info: dict) -> dict:
    return RunInfoOutput(info).data  # type: ignore[return-value]


class RunsView(SessionAPIView):
    """Streaming runs of the session: start one, or list those going and the last few finished."""

    def get_throttles(self):  # type: ignore[no-untyped-def]
        # Only starting a run counts against the exec limit; reading its output never does.
        if self.request.method == "POST":
            return [ExecRateThrottle(), ApiRateThrottle()]
        return super().get_throttles()

    @extend_schema(operation_id="vibecode_sessions_runs_list", responses=RunListOutput)
    def get(self, request: Request, session_id: str) -> Response:
        listed = runs.run_list(session=self.get_session(request, session_id))
        return Response(RunListOutput({"runs": listed}).data)

    @extend_schema(request=RunStartInput, responses={201: RunInfoOutput})
    def post(self, request: Request, session_id: str) -> Response:
        data = RunStartInput(data=request.data)
        data.is_valid(raise_exception=True)
        args = data.validated_data
        started = runs.run_start(
            session=self.get_session(request, session_id),
            path=args.get("path"),
            argv=args.get("argv"),
            args=args.get("args"),
        )
        return Response(_run_info(started), status=status.HTTP_201_CREATED)


class RunDetailView(SessionAPIView):
    @extend_schema(operation_id="vibecode_sessions_run_detail", responses=RunInfoOutput)
    def get(self, request: Request, session_id: str, run_id: str) -> Response:
        for info in runs.run_list(session=self.get_session(request, session_id)):
            if info.get("run_id") == run_id:
                return Response(_run_info(info))
        raise runs.RunNotFound()


OFFSET = OpenApiParameter(
    "offset", int, description="Byte offset to start from (default 0); a Last-Event-ID header wins."
)


class RunEventsView(SessionAPIView):
    renderer_classes = [JSONRenderer, EventStreamRenderer]

    @extend_schema(parameters=[OFFSET], responses={(200, "text/event-stream"): str})
    def get(self, request: Request, session_id: str, run_id: str) -> StreamingHttpResponse:
        raw = request.headers.get("Last-Event-ID") or request.query_params.get("offset") or "0"
        if not raw.isdigit() or len(raw) > 18:
            raise exceptions.ValidationError({"offset": ["A byte offset: a whole number, 0 or more."]})
        events = runs.run_events(
            session=self.get_session(request, session_id), run_id=run_id, offset=int(raw)
        )
        response = StreamingHttpResponse(streaming_body(request, events), content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx passes each event on at once
        return response


class RunInputView(SessionAPIView):
    @extend_schema(request=RunInputInput, responses=RunInputOutput)
    def post(self, request: Request, session_id: str, run_id: str) -> Response:
        data = RunInputInput(data=request.data)
        data.is_valid(raise_exception=True)
        sent = runs.run_input(
            session=self.get_session(request, session_id),
            run_id=run_id,
            text=data.validated_data["text"],
            eof=data.validated_data["eof"],
        )
        return Response(RunInputOutput(sent).data)


class RunStopView(SessionAPIView):
    @extend_schema(request=None, responses=RunInfoOutput)
    def post(self, request: Request, session_id: str, run_id: str) -> Response:
        stopped = runs.run_stop(session=self.get_session(request, session_id), run_id=run_id)
        return Response(_run_info(stopped))
