"""Sessions, their containers' runtime state, per-user quotas and the audit log.

Models hold fields, constraints and small properties; they never call Docker. The runtime state
(container id and name, volume) is what the runtime returned, never re-derived from a template.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models

SLUG_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no 0/o, 1/l: readable in logs and URLs


def new_public_id() -> str:
    """A short random slug: 10 characters, about 50 bits; never sequential."""
    return "".join(secrets.choice(SLUG_ALPHABET) for _ in range(10))


LOCAL_ENGINE = "local"


class Engine(models.Model):
    """A Docker engine that holds workspaces (docs/engines.md). ``local`` is ``DOCKER_HOST``;
    ``VIBECODE_ENGINES`` adds more (:func:`sessions_app.engines.engines_sync_from_env`), and
    staff may add others here. Sessions name their engine by ``name``."""

    class State(models.TextChoices):
        ACTIVE = "active"  # takes new workspaces
        DRAINING = "draining"  # keeps its workspaces, takes no new ones
        DISABLED = "disabled"  # takes no new ones (its workspaces are still reached)

    name = models.SlugField(max_length=63, unique=True)
    docker_url = models.CharField(max_length=300, help_text="unix:///path/docker.sock or tcp://host:2376")
    tls_dir = models.CharField(
        max_length=300, blank=True, help_text="For tcp://: a directory with ca.pem, cert.pem and key.pem."
    )
    max_sessions = models.PositiveIntegerField(
        default=0, help_text="Running workspaces at most; 0: no limit."
    )
    memory_reserve_mb = models.PositiveIntegerField(
        default=0,
        help_text="Memory to leave uncommitted (engine memory minus running workspaces' limits); "
        "0: no memory check.",
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.state})"


class Session(models.Model):
    class Status(models.TextChoices):
        CREATING = "creating"
        RUNNING = "running"
        # Claimed by a resume under the owner's lock before Docker is touched (see services).
        RESUMING = "resuming"
        SUSPENDED = "suspended"
        ERROR = "error"
        DELETING = "deleting"

    # The states that hold (or are about to hold) a running sandbox: what max_running counts.
    ACTIVE_STATUSES = (Status.CREATING, Status.RESUMING, Status.RUNNING)

    public_id = models.CharField(max_length=16, unique=True, default=new_public_id, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="sandbox_sessions"
    )
    name = models.CharField(max_length=100)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CREATING, db_index=True)

    # Runtime state, exactly as the runtime reported it.
    container_id = models.CharField(max_length=80, blank=True)
    container_name = models.CharField(max_length=200, unique=True)
    volume_name = models.CharField(max_length=200, unique=True)
    image = models.CharField(max_length=200)
    runtime = models.CharField(max_length=16, default="runc")
    # The engine the sandbox lives on (Engine.name); every runtime call for it goes there.
    engine = models.CharField(max_length=63, default=LOCAL_ENGINE, db_index=True)
    # A snapshot of the limits the container was made with: {"memory_mb", "cpus", "pids",
    # "disk_mb"}; disk_mb is null (or absent) for a workspace volume without a disk quota.
    limits = models.JSONField(default=dict)
    # Bumped on every state change, so that concurrent transitions cannot both win.
    state_version = models.PositiveIntegerField(default=0)

    created_at = models.DateTimeField(auto_now_add=True)
    last_activity_at = models.DateTimeField(auto_now_add=True, db_index=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "status"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"

    @property
    def short_container_id(self) -> str:
        return self.container_id[:12]


class Quota(models.Model):
    """Per-user overrides; an empty field means the server default from settings."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="quota")
    max_sessions = models.PositiveIntegerField(
        null=True, blank=True, help_text="Default: VIBECODE_MAX_SESSIONS (5)."
    )
    max_running = models.PositiveIntegerField(
        null=True, blank=True, help_text="Default: VIBECODE_MAX_RUNNING (2)."
    )
    memory_mb = models.PositiveIntegerField(
        null=True, blank=True, help_text="Default: VIBECODE_SANDBOX_MEMORY_MB (2048)."
    )
    cpus = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Default: VIBECODE_SANDBOX_CPUS (1.5).",
    )
    pids = models.PositiveIntegerField(
        null=True, blank=True, help_text="Default: VIBECODE_SANDBOX_PIDS (512)."
    )
    idle_timeout_minutes = models.PositiveIntegerField(
        null=True, blank=True, help_text="Default: VIBECODE_IDLE_TIMEOUT_MINUTES (120)."
    )
    disk_mb = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Disk quota of each new workspace, in MB. Default: VIBECODE_SANDBOX_DISK_MB (10240). "
        "Existing workspaces keep the quota they were made with.",
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(memory_mb__gte=64) | models.Q(memory_mb__isnull=True),
                name="quota_memory_min",
            ),
            models.CheckConstraint(
                condition=models.Q(cpus__gt=0) | models.Q(cpus__isnull=True), name="quota_cpus_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(pids__gte=16) | models.Q(pids__isnull=True), name="quota_pids_min"
            ),
            models.CheckConstraint(
                condition=models.Q(disk_mb__gte=16) | models.Q(disk_mb__isnull=True), name="quota_disk_min"
            ),
        ]

    def __str__(self) -> str:
        return f"Quota of {self.user}"


class SessionEvent(models.Model):
    """The audit log: who did what to which session, when."""

    class Action(models.TextChoices):
        CREATE = "create"
        SUSPEND = "suspend"
        RESUME = "resume"
        DELETE = "delete"
        ERROR = "error"
        RECONCILE = "reconcile"
        CLEANUP = "cleanup"
        ENGINE = "engine"  # an engine's state changed (no session)
        # Security events (the session may be absent: a login concerns no session).
        LOGIN = "login"
        LOGIN_FAILED = "login_failed"
        TOKEN_REFRESH = "token_refresh"  # noqa: S105  (an event name, not a secret)
        PATH_REFUSED = "path_refused"
        WS_REFUSED = "ws_refused"

    session = models.ForeignKey(
        Session, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    # Kept as text too, so that events outlive the session row.
    session_public_id = models.CharField(max_length=16, blank=True, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    action = models.CharField(max_length=32, choices=Action.choices)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.action} {self.session_public_id} by {self.actor or 'system'}"


class WorkbenchState(models.Model):
    """What the IDE of one session looked like: open tabs and their cursors, the active tab, the
    panel's size and the open terminals. One row per session (so per user and workspace); the
    page saves it as it changes and restores it on load, in any browser."""

    session = models.OneToOneField(Session, on_delete=models.CASCADE, related_name="workbench_state")
    # Validated by sessions_app.api.serializers.WorkbenchStateInput, capped in size by
    # VIBECODE_MAX_WORKBENCH_BYTES (sessions_app.workbench.workbench_save).
    state = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Workbench of {self.session}"


class WarmSandbox(models.Model):
    """One member of the warm pool: a sandbox (container and workspace volume) made and started
    ahead of demand, under pool names, that a create claims instead of making one.

    The row is claimed before anything touches the engine, as sessions are: ``warming`` while the
    refill makes it, ``ready`` once it answers exec, ``claimed`` in the very transaction that makes
    the session which now owns it (so the volume is always named by one row or the other), and
    ``removing`` once reconcile (or a failed claim) has taken it to remove. Only a ``removing``
    row's volume is ever deleted by the pool, and a row reaches ``removing`` only from
    ``warming``/``ready``, or from a claim given back before its session ever saw it.
    Ownership of a claimed sandbox is this row's ``session`` (and the session's row), never a
    Docker label: labels are fixed at creation, so a claimed container keeps its pool labels.
    """

    class State(models.TextChoices):
        WARMING = "warming"
        READY = "ready"
        CLAIMED = "claimed"
        REMOVING = "removing"

    # The states that count toward VIBECODE_WARM_POOL.
    POOL_STATES = (State.WARMING, State.READY)

    pool_id = models.CharField(max_length=16, unique=True, default=new_public_id, editable=False)
    state = models.CharField(max_length=16, choices=State.choices, default=State.WARMING, db_index=True)
    # Runtime state, exactly as the runtime reported it. container_name is the pool name the
    # member was made under; a claim renames the container (the session row records the new name).
    container_id = models.CharField(max_length=80, blank=True)
    container_name = models.CharField(max_length=200, unique=True)
    volume_name = models.CharField(max_length=200, unique=True)
    image = models.CharField(max_length=200)
    runtime = models.CharField(max_length=16, default="runc")
    # The engine it was made on (the pool is made on local only: docs/engines.md).
    engine = models.CharField(max_length=63, default=LOCAL_ENGINE)
    limits = models.JSONField(default=dict)
    # A digest of everything else of the spec (image, runtime, env, mounts, hardening): a create
    # claims only a member whose key equals its own spec's (sessions_app.specs.pool_key).
    spec_key = models.CharField(max_length=64, db_index=True)
    session = models.OneToOneField(
        Session, null=True, blank=True, on_delete=models.CASCADE, related_name="warm_sandbox"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        verbose_name = "warm pool member"

    def __str__(self) -> str:
        return f"{self.container_name} ({self.state})"

    @property
    def short_container_id(self) -> str:
        return self.container_id[:12]
