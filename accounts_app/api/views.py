"""Auth API: JWT login, refresh with rotation, logout (blacklist), registration and ``/api/me``."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.serializers import (
    TokenBlacklistSerializer,
    TokenObtainPairSerializer,
    TokenRefreshSerializer,
)

from accounts_app.api.serializers import (
    EDITOR_SETTING_FIELDS,
    EditorSettingsInput,
    EditorSettingsOutput,
    LoginInput,
    MeOutput,
    RefreshInput,
    RegisterInput,
    TokenPairOutput,
)
from accounts_app.errors import InvalidEditorSettings, UnknownEditorSetting
from accounts_app.selectors import editor_settings_get
from accounts_app.services import editor_settings_update, user_register
from core_app.api.errors import validation_detail
from core_app.api.throttling import ApiRateThrottle, LoginRateThrottle
from core_app.net import client_ip
from sessions_app.audit import session_event_record
from sessions_app.models import SessionEvent


class InvalidRefreshToken(exceptions.AuthenticationFailed):
    default_detail = "The refresh token is invalid, expired or already used."
    default_code = "token_not_valid"


def _run_token_serializer(serializer_cls: type, data: dict) -> dict:
    serializer = serializer_cls(data=data)
    try:
        serializer.is_valid(raise_exception=True)
    except TokenError as exc:
        raise InvalidRefreshToken() from exc
    return serializer.validated_data


class PublicAuthView(APIView):
    """An endpoint that takes credentials in its body rather than a header.

    It still answers 401 (not 403) to bad credentials, with a ``WWW-Authenticate`` challenge.
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get_authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class LoginView(PublicAuthView):
    throttle_classes = [LoginRateThrottle, ApiRateThrottle]

    @extend_schema(request=LoginInput, responses=TokenPairOutput, auth=[])
    def post(self, request: Request) -> Response:
        LoginInput(data=request.data).is_valid(raise_exception=True)
        serializer = TokenObtainPairSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        session_event_record(
            session=None,
            action=SessionEvent.Action.LOGIN,
            actor=serializer.user,
            via="api",
            ip=client_ip(request),
        )
        return Response(TokenPairOutput(serializer.validated_data).data)


class RefreshView(PublicAuthView):
    @extend_schema(request=RefreshInput, responses=TokenPairOutput, auth=[])
    def post(self, request: Request) -> Response:
        data = RefreshInput(data=request.data)
        data.is_valid(raise_exception=True)
        tokens = _run_token_serializer(TokenRefreshSerializer, data.validated_data)
        session_event_record(session=None, action=SessionEvent.Action.TOKEN_REFRESH, ip=client_ip(request))
        return Response(TokenPairOutput(tokens).data)


class LogoutView(PublicAuthView):
    @extend_schema(request=RefreshInput, responses={204: None}, auth=[])
    def post(self, request: Request) -> Response:
        data = RefreshInput(data=request.data)
        data.is_valid(raise_exception=True)
        _run_token_serializer(TokenBlacklistSerializer, data.validated_data)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RegisterView(PublicAuthView):
    @extend_schema(request=RegisterInput, responses={201: MeOutput}, auth=[])
    def post(self, request: Request) -> Response:
        if not settings.VIBECODE_ALLOW_SIGNUP:
            raise exceptions.PermissionDenied(
                "Sign-up is closed on this server. Ask an administrator for an account.",
                code="signup_disabled",
            )
        data = RegisterInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            user = user_register(**data.validated_data)
        except DjangoValidationError as exc:
            raise exceptions.ValidationError({"password": exc.messages}) from exc
        return Response(MeOutput(user).data, status=status.HTTP_201_CREATED)


class MeView(APIView):
    @extend_schema(responses=MeOutput)
    def get(self, request: Request) -> Response:
        return Response(MeOutput(request.user).data)


class EditorSettingsView(APIView):
    """The signed-in user's editor settings, the same in every workspace and browser."""

    @extend_schema(responses=EditorSettingsOutput)
    def get(self, request: Request) -> Response:
        return Response(EditorSettingsOutput(editor_settings_get(user=request.user)).data)

    @extend_schema(request=EditorSettingsInput, responses=EditorSettingsOutput)
    def put(self, request: Request) -> Response:
        if not isinstance(request.data, dict):
            raise InvalidEditorSettings("The editor settings must be a JSON object.")
        unknown = sorted(set(request.data) - set(EDITOR_SETTING_FIELDS))
        if unknown:
            raise UnknownEditorSetting(f"There is no editor setting {unknown[0]!r}.", unknown=unknown)
        data = EditorSettingsInput(data=request.data, partial=True)
        if not data.is_valid():
            raise InvalidEditorSettings(validation_detail(data.errors), errors=data.errors)
        row = editor_settings_update(user=request.user, changes=dict(data.validated_data))
        return Response(EditorSettingsOutput(row).data)
