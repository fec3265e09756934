from __future__ import annotations

from django.apps import AppConfig

from sessions_app.signals import session_stopping
from terminal_app import notify, transport


class TerminalConfig(AppConfig):
    name = "terminal_app"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # sessions_app imports no terminal code: it sends a signal, connected here.
        session_stopping.connect(notify.on_session_stopping, dispatch_uid="terminal_app.session_stopping")
        transport.install()
