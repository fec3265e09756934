from __future__ import annotations

from django.apps import AppConfig


class EgressConfig(AppConfig):
    name = "egress_app"
    verbose_name = "Package egress"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here because they need the models, which are loaded only once apps are ready.
        from core_app.scheduler import register_maintenance_task
        from egress_app import (
            checks,  # noqa: F401  (registers the system checks)
            services,
        )
        from sessions_app.runtime import tunnel

        # Each connection a sandbox makes to 127.0.0.1:3128 (its HTTP(S)_PROXY) comes here.
        tunnel.register_accept_handler(services.egress_tunnel_handler)
        register_maintenance_task("egress_audit", lambda: services.egress_audit_prune())
