"""VibeCode settings: one file, read from environment variables.

The embedded defaults (no variables set) are SQLite in ``var/``, the in-memory channel layer, a
local-memory cache and the local Docker socket. ``DATABASE_URL`` switches to PostgreSQL and
``REDIS_URL`` to channels-redis plus the Redis cache. Every variable is listed, with its default,
in ``.env.example`` and the README. Bad values stop start-up with a message naming the variable.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from csp.constants import NONCE as CSP_NONCE
from django.core.exceptions import ImproperlyConfigured

from core_app.vendor import immutable_url_regex, monaco_static_dir, package_version
from vibecode_project.env import (
    env_bool,
    env_choice,
    env_engines,
    env_float,
    env_int,
    env_json,
    env_list,
    env_networks,
    env_rate,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VIBECODE_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", True)


def _secret_key() -> str:
    """``DJANGO_SECRET_KEY``, or in development a key generated once into ``var/``."""
    key = env_str("DJANGO_SECRET_KEY")
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DEBUG is off.")
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()

SEED_ORIGINS = ["http://localhost:9000", "http://localhost:3000", "http://localhost:8000"]
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", SEED_ORIGINS)
CORS_ALLOW_CREDENTIALS = True
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", CORS_ALLOWED_ORIGINS)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "core_app",
    "accounts_app",
    "sessions_app",
    "workspace_app",
    "terminal_app",
    "assistant_app",
    "preview_app",
    "egress_app",
    "lsp_app",
]

MIDDLEWARE = [
    "core_app.middleware.AccessLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core_app.middleware.ApiErrorMiddleware",
]

ROOT_URLCONF = "vibecode_project.urls"
WSGI_APPLICATION = "vibecode_project.wsgi.application"
ASGI_APPLICATION = "vibecode_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Data stores -------------------------------------------------------------------------------

DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    if not DATABASE_URL.startswith(("postgres://", "postgresql://", "sqlite://")):
        raise ImproperlyConfigured("DATABASE_URL must be a postgresql:// or sqlite:// URL.")
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL,
            conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0, minimum=0),
            conn_health_checks=True,
        )
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "db.sqlite3",
            # A busy SQLite should wait rather than fail with "database is locked".
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured("REDIS_URL must be a redis:// or rediss:// URL.")
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 times a read out after 5 s, exactly as long as channels-redis's blocking
            # pop waits for a message, so idle consumers died (channels_redis#422): no read timeout.
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
                # channels-redis's default, named here on purpose: msgpack, never pickle.
                "serializer_format": "msgpack",
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "vibecode",
            # JSON, never pickle: whoever can write to Redis must not run code in a backend.
            "OPTIONS": {"serializer": "core_app.cache.JSONSerializer"},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    # django-ratelimit warns that a local-memory cache is per process. With the embedded
    # defaults there is exactly one daphne process, so the counts are right.
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.E003", "django_ratelimit.W001"]

# --- Auth --------------------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login"

JWT_SECRET = env_str("JWT_SECRET")
if not JWT_SECRET:
    if not DEBUG:
        raise ImproperlyConfigured("JWT_SECRET must be set when DEBUG is off.")
    JWT_SECRET = SECRET_KEY
JWT_ALGORITHM = env_choice("JWT_ALGORITHM", "HS256", {"HS256", "HS384", "HS512"})
ACCESS_TOKEN_EXPIRE_MINUTES = env_int("ACCESS_TOKEN_EXPIRE_MINUTES", 60, minimum=1)
REFRESH_TOKEN_EXPIRE_DAYS = env_int("REFRESH_TOKEN_EXPIRE_DAYS", 7, minimum=1)

SIMPLE_JWT = {
    "SIGNING_KEY": JWT_SECRET,
    "ALGORITHM": JWT_ALGORITHM,
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=ACCESS_TOKEN_EXPIRE_MINUTES),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=REFRESH_TOKEN_EXPIRE_DAYS),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    "AUTH_HEADER_TYPES": ("Bearer",),
}

VIBECODE_ALLOW_SIGNUP = env_bool("VIBECODE_ALLOW_SIGNUP", False)

# --- API ---------------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_THROTTLE_CLASSES": ["core_app.api.throttling.ApiRateThrottle"],
    "EXCEPTION_HANDLER": "core_app.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "core_app.api.schema.ErrorAutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "VibeCode API",
    "DESCRIPTION": "Sessions, workspace files, code execution and terminals of a VibeCode server.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Rate limits (django-ratelimit rates: N/s, N/m, N/h or N/d).
VIBECODE_RATE_API = env_rate("VIBECODE_RATE_API", "100/m")
VIBECODE_RATE_LOGIN = env_rate("VIBECODE_RATE_LOGIN", "10/m")
# Failed sign-ins per username from every address together (slower than the per-address limit).
VIBECODE_RATE_LOGIN_USERNAME = env_rate("VIBECODE_RATE_LOGIN_USERNAME", "100/h")
VIBECODE_RATE_EXEC = env_rate("VIBECODE_RATE_EXEC", "10/m")
VIBECODE_RATE_SAVE = env_rate("VIBECODE_RATE_SAVE", "60/m")
VIBECODE_RATE_ASSISTANT = env_rate("VIBECODE_RATE_ASSISTANT", "20/m")
# Requests from these proxies may name the client in X-Forwarded-For; nobody else can.
VIBECODE_TRUSTED_PROXIES = env_networks("VIBECODE_TRUSTED_PROXIES", [])

# --- Monitoring --------------------------------------------------------------------------------

# /metrics answers staff, or a scraper presenting this token from one of these networks.
VIBECODE_METRICS_TOKEN = env_str("VIBECODE_METRICS_TOKEN")
VIBECODE_METRICS_NETWORKS = env_networks("VIBECODE_METRICS_NETWORKS", ["127.0.0.0/8", "::1"])

# --- Docker ------------------------------------------------------------------------------------

DOCKER_HOST = env_str("DOCKER_HOST", "unix:///var/run/docker.sock")
DOCKER_TIMEOUT_SECONDS = env_float("DOCKER_TIMEOUT_SECONDS", 30.0, minimum=1.0)
# Pinned rather than "auto", so building the client never needs the engine to answer.
DOCKER_API_VERSION = env_str("DOCKER_API_VERSION", "1.41")
# More engines than DOCKER_HOST (which is engine "local"): name=url pairs, see docs/engines.md.
VIBECODE_ENGINES = env_engines("VIBECODE_ENGINES")
VIBECODE_RUNTIME_BACKEND = env_choice("VIBECODE_RUNTIME_BACKEND", "docker", {"docker"})

# --- Sandboxes (one container per session) -----------------------------------------------------

# Containers and volumes carry vibecode.instance=<this>, so that two installations (or a test run
# beside a real one) sharing a Docker engine never reconcile or clean up each other's sandboxes.
VIBECODE_INSTANCE = env_str("VIBECODE_INSTANCE", "default")
VIBECODE_SANDBOX_IMAGE = env_str("VIBECODE_SANDBOX_IMAGE", "vibecode-sandbox:latest")
# runc (default), runsc (gVisor) or crun (measured by `make bench`; registered by scripts/dockerd.sh).
VIBECODE_SANDBOX_RUNTIME = env_choice("VIBECODE_SANDBOX_RUNTIME", "runc", {"runc", "runsc", "crun"})
VIBECODE_SANDBOX_NETWORK = env_str("VIBECODE_SANDBOX_NETWORK", "none")
VIBECODE_SANDBOX_USER = env_str("VIBECODE_SANDBOX_USER", "1000:1000")
VIBECODE_SANDBOX_READ_ONLY_ROOT = env_bool("VIBECODE_SANDBOX_READ_ONLY_ROOT", True)
VIBECODE_SANDBOX_DROP_CAPABILITIES = env_bool("VIBECODE_SANDBOX_DROP_CAPABILITIES", True)
VIBECODE_SANDBOX_TMP_SIZE_MB = env_int("VIBECODE_SANDBOX_TMP_SIZE_MB", 512, minimum=16)
VIBECODE_SANDBOX_NOFILE = env_int("VIBECODE_SANDBOX_NOFILE", 4096, minimum=64)
VIBECODE_SANDBOX_LOG_MAX_SIZE = env_str("VIBECODE_SANDBOX_LOG_MAX_SIZE", "10m")
VIBECODE_SANDBOX_STOP_TIMEOUT_SECONDS = env_int("VIBECODE_SANDBOX_STOP_TIMEOUT_SECONDS", 3, minimum=0)

# Default limits and quotas; staff override them per user in the admin (Quota).
VIBECODE_SANDBOX_MEMORY_MB = env_int("VIBECODE_SANDBOX_MEMORY_MB", 2048, minimum=64)
VIBECODE_SANDBOX_CPUS = env_float("VIBECODE_SANDBOX_CPUS", 1.5, minimum=0.1)
VIBECODE_SANDBOX_PIDS = env_int("VIBECODE_SANDBOX_PIDS", 512, minimum=16)
VIBECODE_MAX_SESSIONS = env_int("VIBECODE_MAX_SESSIONS", 5, minimum=0)
VIBECODE_MAX_RUNNING = env_int("VIBECODE_MAX_RUNNING", 2, minimum=0)
VIBECODE_IDLE_TIMEOUT_MINUTES = env_int("VIBECODE_IDLE_TIMEOUT_MINUTES", 120, minimum=1)

# --- Workspace disk quotas (issue 13) ---
# Default hard disk quota of each new workspace; staff override it per user (Quota.disk_mb).
VIBECODE_SANDBOX_DISK_MB = env_int("VIBECODE_SANDBOX_DISK_MB", 10240, minimum=16)
# A btrfs filesystem (mounted, quota on) holding one subvolume with a qgroup limit per workspace.
# Unset: var/workspaces when setup mounted its loop image there, else plain Docker volumes with
# no disk quota (a system check warns).
VIBECODE_WORKSPACES_DIR = env_str("VIBECODE_WORKSPACES_DIR") or (
    str(VAR_DIR / "workspaces") if os.path.ismount(VAR_DIR / "workspaces") else ""
)
# --- end of workspace disk quotas ---
# --- The warm pool (sessions_app/warm_pool.py, docs/deploy.md "The warm pool") ---
# Sandboxes kept created and started ahead of demand, for the default image and limits; a create
# claims one instead of making a container. 0 turns the pool off (the test suite's default).
VIBECODE_WARM_POOL = env_int("VIBECODE_WARM_POOL", 2, minimum=0)
# The pool shrinks (to zero) rather than leave less than this much of the engine's memory
# uncommitted: engine MemTotal - memory limits of active sessions - pool members >= reserve.
VIBECODE_WARM_POOL_MEMORY_RESERVE_MB = env_int("VIBECODE_WARM_POOL_MEMORY_RESERVE_MB", 2048, minimum=0)
# --- end of the warm pool ---
# Seconds between in-server maintenance rounds (reconcile + idle cleanup); 0 turns them off.
VIBECODE_CLEANUP_INTERVAL = env_int("VIBECODE_CLEANUP_INTERVAL", 60, minimum=0)
# A session still "creating" after this long was cut short (a backend killed mid-create).
VIBECODE_STUCK_CREATING_SECONDS = env_int("VIBECODE_STUCK_CREATING_SECONDS", 120, minimum=0)

# Non-interactive exec.
VIBECODE_EXEC_TIMEOUT_SECONDS = env_int("VIBECODE_EXEC_TIMEOUT_SECONDS", 30, minimum=1)
VIBECODE_EXEC_MAX_TIMEOUT_SECONDS = env_int("VIBECODE_EXEC_MAX_TIMEOUT_SECONDS", 300, minimum=1)
VIBECODE_EXEC_OUTPUT_LIMIT_BYTES = env_int("VIBECODE_EXEC_OUTPUT_LIMIT_BYTES", 1024 * 1024, minimum=1024)
# --- streaming runs (issue 15): the IDE's Run, owned by the sandbox's helper ---
# A streaming run is killed after this many seconds; the one-shot exec API keeps its own limits.
VIBECODE_RUN_TIMEOUT_SECONDS = env_int("VIBECODE_RUN_TIMEOUT_SECONDS", 600, minimum=1)
# --- end of streaming runs ---

# Workspace files.
VIBECODE_MAX_EDIT_BYTES = env_int("VIBECODE_MAX_EDIT_BYTES", 5 * 1024 * 1024, minimum=1024)
VIBECODE_MAX_UPLOAD_BYTES = env_int("VIBECODE_MAX_UPLOAD_BYTES", 100 * 1024 * 1024, minimum=1024)
# Uploads stream through temporary files, never whole into memory; the request as a whole is
# bounded by VIBECODE_MAX_UPLOAD_BYTES in the upload view.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = VIBECODE_MAX_EDIT_BYTES * 2 + 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FILES = 5000

# The in-sandbox helper (issue 12): no request thread waits on a sandbox longer than the deadline
# (an exec: its own timeout plus a margin); a helper silent (not even its 1 s heartbeat) for the
# stall time while a call waits is declared dead and replaced; calls in flight per workspace are
# capped (503 workspace_busy past it). Downloads and zips over the size cap answer 413.
VIBECODE_HELPER_DEADLINE_SECONDS = env_int("VIBECODE_HELPER_DEADLINE_SECONDS", 30, minimum=1)
VIBECODE_HELPER_STALL_SECONDS = env_int("VIBECODE_HELPER_STALL_SECONDS", 8, minimum=2)
VIBECODE_HELPER_MAX_CALLS = env_int("VIBECODE_HELPER_MAX_CALLS", 16, minimum=1)
VIBECODE_MAX_DOWNLOAD_MB = env_int("VIBECODE_MAX_DOWNLOAD_MB", 10240, minimum=1)

# --- Package egress (issue 14) ---
# Sandboxes keep network "none". pip, npm and git inside one reach the internet only through the
# backend: HTTP(S)_PROXY there is 127.0.0.1:3128, which the tunnel helper carries over the Docker
# API to egress_app's proxy. "allowlist" (or "on") lets through only names matching
# VIBECODE_EGRESS_ALLOW; "open" any name; "off" no proxy at all (and no proxy variables in
# new sandboxes). Whatever the name, addresses in loopback, private, link-local, CGNAT, metadata,
# multicast and reserved networks are refused (egress_app/policy.py lists them) unless listed in
# VIBECODE_EGRESS_ALLOW_ADDRESSES.
_egress_mode = env_choice("VIBECODE_EGRESS", "allowlist", {"off", "on", "allowlist", "open"})
VIBECODE_EGRESS = "allowlist" if _egress_mode == "on" else _egress_mode
# Host names (and *.suffix wildcards) of the package registries: PyPI, npm, and GitHub for git
# clones and the tarballs pip and npm fetch from it. Not deb.debian.org: the sandbox user is not
# root and its root filesystem is read-only, so apt-get cannot install anything there anyway.
VIBECODE_EGRESS_ALLOW = [
    pattern.lower().rstrip(".")
    for pattern in env_list(
        "VIBECODE_EGRESS_ALLOW",
        [
            "pypi.org",
            "files.pythonhosted.org",
            "registry.npmjs.org",
            "github.com",
            "codeload.github.com",
            "objects.githubusercontent.com",
        ],
    )
]
VIBECODE_EGRESS_PORTS: list[int] = []
for _port in env_list("VIBECODE_EGRESS_PORTS", ["443", "80"]):
    if not _port.isdigit() or not 0 < int(_port) < 65536:
        raise ImproperlyConfigured(f"VIBECODE_EGRESS_PORTS: {_port!r} is not a TCP port.")
    VIBECODE_EGRESS_PORTS.append(int(_port))
VIBECODE_EGRESS_ALLOW_ADDRESSES = env_networks("VIBECODE_EGRESS_ALLOW_ADDRESSES", [])
# Open egress connections per workspace and per backend process; past them a 503.
VIBECODE_EGRESS_MAX_CONNECTIONS_PER_WORKSPACE = env_int(
    "VIBECODE_EGRESS_MAX_CONNECTIONS_PER_WORKSPACE", 32, minimum=1
)
VIBECODE_EGRESS_MAX_CONNECTIONS = env_int("VIBECODE_EGRESS_MAX_CONNECTIONS", 256, minimum=1)
# A request head must arrive within the head timeout, the upstream must accept within the connect
# timeout, and a connection that moves no byte either way for the idle timeout is closed.
VIBECODE_EGRESS_HEAD_TIMEOUT_SECONDS = env_float("VIBECODE_EGRESS_HEAD_TIMEOUT_SECONDS", 10.0, minimum=0.5)
VIBECODE_EGRESS_CONNECT_TIMEOUT_SECONDS = env_float(
    "VIBECODE_EGRESS_CONNECT_TIMEOUT_SECONDS", 10.0, minimum=0.5
)
VIBECODE_EGRESS_IDLE_TIMEOUT_SECONDS = env_float("VIBECODE_EGRESS_IDLE_TIMEOUT_SECONDS", 120.0, minimum=1.0)
# Bytes one connection may move, both ways together; 0: no cap.
VIBECODE_EGRESS_MAX_MB_PER_CONNECTION = env_int("VIBECODE_EGRESS_MAX_MB_PER_CONNECTION", 2048, minimum=0)
# Egress audit rows (admin: Egress connections) older than this are deleted by maintenance.
VIBECODE_EGRESS_AUDIT_DAYS = env_int("VIBECODE_EGRESS_AUDIT_DAYS", 30, minimum=1)
# A PEM bundle on the engine's host, for networks behind a TLS-inspecting proxy: mounted read-only
# into new sandboxes while egress is on, where SSL_CERT_FILE, REQUESTS_CA_BUNDLE, PIP_CERT,
# NODE_EXTRA_CA_CERTS and GIT_SSL_CAINFO point at it. scripts/test.sh and scripts/serve.sh set it
# to $SSL_CERT_FILE when that file exists. Unreadable: system check vibecode.E014.
VIBECODE_SANDBOX_CA_BUNDLE = env_str("VIBECODE_SANDBOX_CA_BUNDLE").strip()
# --- end of package egress ---

# --- Previews (issue 14) ---
# Each listening port of a sandbox gets its own origin, <scheme>://<port>-<session>.<domain>[:port]/,
# so a user's pages never run on VibeCode's origin. In development the domain is `localhost`
# (browsers resolve *.localhost to loopback); in production a wildcard domain (docs/deploy.md).
# The app's cookies must never cover it: check vibecode.E015 refuses start-up if they would.
VIBECODE_PREVIEW_DOMAIN = env_str("VIBECODE_PREVIEW_DOMAIN", "localhost").strip().strip(".").lower()
VIBECODE_PREVIEW_SCHEME = env_choice("VIBECODE_PREVIEW_SCHEME", "http", {"http", "https"})
# The port browsers use for preview origins: in development the app's own (VIBECODE_PORT); empty
# means the scheme's default (production, behind nginx).
VIBECODE_PREVIEW_PORT = env_str("VIBECODE_PREVIEW_PORT", env_str("VIBECODE_PORT", "8000") if DEBUG else "")
if VIBECODE_PREVIEW_PORT and not (VIBECODE_PREVIEW_PORT.isdigit() and 0 < int(VIBECODE_PREVIEW_PORT) < 65536):
    raise ImproperlyConfigured("VIBECODE_PREVIEW_PORT must be a TCP port number or empty.")
# false: staff turned public previews off; public flags are ignored and making a port public is
# refused (403 public_previews_disabled).
VIBECODE_PREVIEW_PUBLIC = env_bool("VIBECODE_PREVIEW_PUBLIC", True)
# The app's own origin, where a preview origin sends a visitor without a preview cookie (for the
# hand-off). Empty: the preview scheme, domain and port (right for development on localhost).
VIBECODE_APP_URL = env_str("VIBECODE_APP_URL").strip().rstrip("/")
# The IDE's Ports panel polls every 2.5 s per open tab: a limit of its own, beside the API's.
VIBECODE_RATE_PORTS = env_rate("VIBECODE_RATE_PORTS", "120/m")
# The preview proxy (preview_app/proxy.py):
# Open preview connections (HTTP requests in flight and WebSockets) per workspace and process,
# then 503; request bodies over the cap answer 413; a connection with no bytes either way for the
# idle time is closed.
VIBECODE_PREVIEW_MAX_CONNECTIONS = env_int("VIBECODE_PREVIEW_MAX_CONNECTIONS", 64, minimum=1)
VIBECODE_PREVIEW_MAX_BODY_MB = env_int("VIBECODE_PREVIEW_MAX_BODY_MB", 100, minimum=1)
VIBECODE_PREVIEW_IDLE_SECONDS = env_int("VIBECODE_PREVIEW_IDLE_SECONDS", 300, minimum=5)
# --- end of previews ---
# --- search, replace and quick open (issue 15): ripgrep in the sandbox, bounded ---------------
# Matches in one search (and per file) before the answer says truncated; seconds before rg is
# killed (a search, a file list, one file's replacement); files a quick-open list holds; files
# one replace-all may change.
VIBECODE_SEARCH_MAX_MATCHES = env_int("VIBECODE_SEARCH_MAX_MATCHES", 2000, minimum=1)
VIBECODE_SEARCH_MAX_PER_FILE = env_int("VIBECODE_SEARCH_MAX_PER_FILE", 200, minimum=1)
VIBECODE_SEARCH_TIMEOUT_SECONDS = env_int("VIBECODE_SEARCH_TIMEOUT_SECONDS", 10, minimum=1)
VIBECODE_QUICK_OPEN_MAX_FILES = env_int("VIBECODE_QUICK_OPEN_MAX_FILES", 50000, minimum=1)
VIBECODE_REPLACE_MAX_FILES = env_int("VIBECODE_REPLACE_MAX_FILES", 500, minimum=1)
# --- end of search ---
# --- Workbench state (issue 15) ---
# The IDE's saved layout per session (open tabs, cursors, panel size, terminals), stored as JSON:
# a state larger than this answers 413 workbench_too_large. The page saves it with a keepalive
# fetch on pagehide, which browsers cap at 64 KiB, so larger values would not help.
VIBECODE_MAX_WORKBENCH_BYTES = env_int("VIBECODE_MAX_WORKBENCH_BYTES", 64 * 1024, minimum=1024)
# --- end of workbench state ---

# --- Terminals ---------------------------------------------------------------------------------

# Open terminal WebSockets per user, across replicas (counted in Redis).
VIBECODE_MAX_TERMINALS_PER_USER = env_int("VIBECODE_MAX_TERMINALS_PER_USER", 16, minimum=1)
# Terminal handshakes per user and per client IP: a brake on bursts, well above an IDE that opens
# a dozen terminals and reconnects them after a dropped network.
VIBECODE_RATE_TERMINAL_USER = env_rate("VIBECODE_RATE_TERMINAL_USER", "120/m")
VIBECODE_RATE_TERMINAL_IP = env_rate("VIBECODE_RATE_TERMINAL_IP", "240/m")

# --- Language servers (docs/lsp-protocol.md) ----------------------------------------------------

# The language servers in the sandbox image, by the id the editor asks for: a label, the file
# endings they serve, and argv (an absolute program path: the sandbox's PATH is the user's).
# VIBECODE_LSP_SERVERS, a JSON object of the same shape, replaces the table (README: adding a
# language server).
VIBECODE_LSP_SERVERS: dict[str, dict[str, Any]] = env_json(
    "VIBECODE_LSP_SERVERS",
    {
        "python": {"label": "Python", "extensions": ["py", "pyi"], "argv": ["/usr/bin/pylsp"]},
        "typescript": {
            "label": "TypeScript",
            "extensions": ["ts", "tsx", "js", "jsx", "mjs", "cjs", "mts", "cts"],
            "argv": [
                "/usr/bin/node",
                "/opt/vibecode/lsp/node_modules/typescript-language-server/lib/cli.mjs",
                "--stdio",
            ],
        },
    },
)
# A language server connection with no message from the editor for this long is closed and its
# server stopped (the editor starts it again on the next edit).
VIBECODE_LSP_IDLE_SECONDS = env_int("VIBECODE_LSP_IDLE_SECONDS", 900, minimum=5)
# The largest JSON-RPC message either way (daphne refuses WebSocket messages over 1 MiB anyway).
VIBECODE_LSP_MAX_MESSAGE_BYTES = env_int("VIBECODE_LSP_MAX_MESSAGE_BYTES", 1024 * 1024, minimum=64 * 1024)

# --- AI assistant ------------------------------------------------------------------------------

# Which model provider answers: "auto" takes the first configured of Ollama, OpenAI-compatible and
# Anthropic; "none" turns the assistant off. API keys stay on the server: they are sent only to
# their provider, never to the browser or into a log line.
VIBECODE_ASSISTANT_PROVIDER = env_choice(
    "VIBECODE_ASSISTANT_PROVIDER", "auto", {"auto", "ollama", "openai", "anthropic", "none"}
)
VIBECODE_ASSISTANT_MODEL = env_str("VIBECODE_ASSISTANT_MODEL").strip()  # empty: the provider's default
VIBECODE_ASSISTANT_TIMEOUT_SECONDS = env_float("VIBECODE_ASSISTANT_TIMEOUT_SECONDS", 60.0, minimum=1.0)
VIBECODE_ASSISTANT_MAX_CONTEXT_CHARS = env_int("VIBECODE_ASSISTANT_MAX_CONTEXT_CHARS", 32000, minimum=2000)
VIBECODE_ASSISTANT_MAX_TOKENS = env_int("VIBECODE_ASSISTANT_MAX_TOKENS", 2048, minimum=16)
# Agent mode: the model works in steps with tools (read, search, write, edit, run, ask). Each
# file change and command waits for the user's review unless the conversation allows auto-apply /
# auto-run, which staff may forbid on the server with VIBECODE_AGENT_ALLOW_AUTO=false.
VIBECODE_AGENT_ALLOW_AUTO = env_bool("VIBECODE_AGENT_ALLOW_AUTO", True)
VIBECODE_AGENT_MAX_STEPS = env_int("VIBECODE_AGENT_MAX_STEPS", 20, minimum=1)
VIBECODE_AGENT_MAX_TOKENS = env_int("VIBECODE_AGENT_MAX_TOKENS", 200000, minimum=1000)
# Wall-clock limit of a turn, not counting the time it waits for the user.
VIBECODE_AGENT_WALL_SECONDS = env_int("VIBECODE_AGENT_WALL_SECONDS", 600, minimum=10)
# How long a turn waits for the user's review before it gives up.
VIBECODE_AGENT_REVIEW_SECONDS = env_int("VIBECODE_AGENT_REVIEW_SECONDS", 3600, minimum=10)
# Output of a tool (a run's output, a file read) the model is shown, at most, in characters.
VIBECODE_AGENT_OUTPUT_CHARS = env_int("VIBECODE_AGENT_OUTPUT_CHARS", 8000, minimum=500)
# Original contents of the files a turn changes, kept for Undo; a change past it is refused.
VIBECODE_AGENT_CHECKPOINT_BYTES = env_int("VIBECODE_AGENT_CHECKPOINT_BYTES", 4 * 1024 * 1024, minimum=1024)
VIBECODE_RATE_AGENT_TURNS = env_rate("VIBECODE_RATE_AGENT_TURNS", "10/m")
OLLAMA_URL = env_str("OLLAMA_URL").strip().rstrip("/")
OPENAI_API_KEY = env_str("OPENAI_API_KEY").strip()
# Any OpenAI-compatible server (llama.cpp, vLLM, LM Studio...). Setting it configures the provider
# even without a key: local servers rarely want one. Empty means https://api.openai.com/v1.
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL").strip().rstrip("/")
ANTHROPIC_API_KEY = env_str("ANTHROPIC_API_KEY").strip()
ANTHROPIC_BASE_URL = env_str("ANTHROPIC_BASE_URL", "https://api.anthropic.com").strip().rstrip("/")
for _name, _url in (
    ("OLLAMA_URL", OLLAMA_URL),
    ("OPENAI_BASE_URL", OPENAI_BASE_URL),
    ("ANTHROPIC_BASE_URL", ANTHROPIC_BASE_URL),
):
    if _url and not _url.startswith(("http://", "https://")):
        raise ImproperlyConfigured(f"{_name}={_url!r} is not an http:// or https:// URL.")
_needs = {
    "ollama": ("OLLAMA_URL", OLLAMA_URL),
    "openai": ("OPENAI_API_KEY or OPENAI_BASE_URL", OPENAI_API_KEY or OPENAI_BASE_URL),
    "anthropic": ("ANTHROPIC_API_KEY", ANTHROPIC_API_KEY),
}.get(VIBECODE_ASSISTANT_PROVIDER)
if _needs and not _needs[1]:
    raise ImproperlyConfigured(
        f"VIBECODE_ASSISTANT_PROVIDER={VIBECODE_ASSISTANT_PROVIDER} needs {_needs[0]} to be set."
    )

# --- Static files, i18n ------------------------------------------------------------------------

STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("VIBECODE_STATIC_ROOT", str(VAR_DIR / "staticfiles")))
# Front-end libraries come from npm (package.json + lockfile) and are served as our own static
# files: nothing is loaded from a CDN, so every page works offline.
NODE_MODULES = BASE_DIR / "node_modules"
MONACO_VERSION = package_version(
    lockfile=BASE_DIR / "package-lock.json",
    package_json=NODE_MODULES / "monaco-editor/package.json",
    name="monaco-editor",
)
VIBECODE_MONACO_STATIC = monaco_static_dir(MONACO_VERSION)
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/xterm", NODE_MODULES / "@xterm/xterm"),
    ("vendor/xterm-addon-fit", NODE_MODULES / "@xterm/addon-fit/lib"),
    ("vendor/xterm-addon-web-links", NODE_MODULES / "@xterm/addon-web-links/lib"),
    ("vendor/xterm-addon-search", NODE_MODULES / "@xterm/addon-search/lib"),
    # A folder per Monaco version: its AMD modules keep their plain names, and can still be
    # cached for good (core_app.vendor).
    (VIBECODE_MONACO_STATIC, NODE_MODULES / "monaco-editor/min"),
    # The assistant's markdown: marked renders, DOMPurify sanitizes (ES modules, via the importmap).
    ("vendor/marked", NODE_MODULES / "marked/lib"),
    ("vendor/dompurify", NODE_MODULES / "dompurify/dist"),
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "core_app.storage.StaticStorage"},
}
# Hashed names and the versioned Monaco folder are served with ``max-age=315360000, public,
# immutable``; whitenoise serves the .gz copies its storage made to browsers that accept gzip.
WHITENOISE_IMMUTABLE_FILE_TEST = immutable_url_regex(STATIC_URL)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Content-Security-Policy (django-csp 4; issue 15) ---
# Scripts come only from our own static files; the one inline script (the IDE's importmap) carries
# the per-request nonce (``request.csp_nonce``). Styles allow 'unsafe-inline' because Monaco and
# xterm.js set style attributes and inject <style> elements at run time for every line they draw
# (and Django's admin uses style attributes); styles cannot run code, and scripts stay locked.
# Monaco's language workers are loaded from our own origin ('self'; blob: for the worker shim).
# Images: our own files and data: URIs (Monaco's and Swagger UI's icons), nothing from elsewhere.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'", CSP_NONCE],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'", "data:"],
        "worker-src": ["'self'", "blob:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        # The IDE's preview pane shows a workspace's port on its own origin (preview_app).
        "frame-src": [
            "'self'",
            f"{VIBECODE_PREVIEW_SCHEME}://*.{VIBECODE_PREVIEW_DOMAIN}",
            f"{VIBECODE_PREVIEW_SCHEME}://*.{VIBECODE_PREVIEW_DOMAIN}:*",
        ],
    },
}
# --- end of Content-Security-Policy ---

# --- Logging -----------------------------------------------------------------------------------

LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", {"DEBUG", "INFO", "WARNING", "ERROR"})
VIBECODE_LOG_FORMAT = env_choice("VIBECODE_LOG_FORMAT", "text", {"text", "json"})
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "core_app.logging.ContextFilter"}},
    "formatters": {
        "text": {
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s "
            "[request=%(request_id)s user=%(user_id)s session=%(session_id)s]"
        },
        "json": {"()": "core_app.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": VIBECODE_LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # django.request logs 4xx at WARNING with the full path, query string included: tokens
        # and tickets travel there, so keep it to server errors.
        "django.request": {"level": "ERROR"},
        "django.channels.server": {"level": "WARNING"},
    },
}
