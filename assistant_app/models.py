"""A conversation with the assistant per session, and its messages."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from sessions_app.models import Session


class Conversation(models.Model):
    session = models.OneToOneField(Session, on_delete=models.CASCADE, related_name="assistant_conversation")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Conversation of {self.session}"


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    class Action(models.TextChoices):
        CHAT = "chat"
        EXPLAIN = "explain"
        FIX = "fix"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    # On the user's messages: what they asked for.
    action = models.CharField(max_length=16, choices=Action.choices, blank=True)
    # On answers: cut short by a provider error or a dropped connection; the text is what arrived.
    incomplete = models.BooleanField(default=False)
    error_code = models.CharField(max_length=40, blank=True)
    provider = models.CharField(max_length=16, blank=True)
    model = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["conversation", "created_at"])]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"


# --- agent mode --------------------------------------------------------------------------------


class AgentSettings(models.Model):
    """Per conversation: may the agent write files and run commands without asking each time.
    Both are off until the user turns them on; ``VIBECODE_AGENT_ALLOW_AUTO=false`` overrides."""

    conversation = models.OneToOneField(Conversation, on_delete=models.CASCADE, related_name="agent_settings")
    auto_apply = models.BooleanField(default=False)
    auto_run = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"Agent settings of {self.conversation}"


class AgentTurn(models.Model):
    """One goal the user gave the agent, worked on in steps. ``version`` grows with every change
    to the turn or its steps: the event stream sends what changed after the version it saw."""

    class Status(models.TextChoices):
        RUNNING = "running"  # the model or a tool is working
        WAITING = "waiting"  # for the user: a review, a Run/Skip or an answer
        DONE = "done"
        FAILED = "failed"
        STOPPED = "stopped"
        UNDONE = "undone"

    ACTIVE = (Status.RUNNING, Status.WAITING)

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="agent_turns")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    goal = models.TextField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    summary = models.TextField(blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    error_detail = models.TextField(blank=True)
    provider = models.CharField(max_length=16, blank=True)
    model = models.CharField(max_length=200, blank=True)
    steps_used = models.PositiveIntegerField(default=0)
    tokens_used = models.PositiveIntegerField(default=0)
    # For this turn only: file changes after "Accept all" apply without asking.
    accept_all = models.BooleanField(default=False)
    cancel_requested = models.BooleanField(default=False)
    version = models.PositiveBigIntegerField(default=1)
    # The worker writes it while it lives; a turn left active with an old heartbeat lost its worker.
    heartbeat_at = models.DateTimeField(auto_now_add=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            # One turn at a time per conversation.
            models.UniqueConstraint(
                fields=["conversation"],
                condition=models.Q(status__in=["running", "waiting"]),
                name="assistant_one_active_agent_turn",
            )
        ]

    def __str__(self) -> str:
        return f"Agent turn {self.pk} ({self.status})"


class AgentStep(models.Model):
    """One thing the agent did or proposes: a tool call with its (trimmed) result, or its answer."""

    class Kind(models.TextChoices):
        LIST_FILES = "list_files"
        READ_FILE = "read_file"
        SEARCH = "search"
        WRITE_FILE = "write_file"
        EDIT_FILE = "edit_file"
        RUN = "run"
        ASK_USER = "ask_user"
        MESSAGE = "message"  # the model's text: the final summary, or words between tool calls
        INVALID = "invalid"  # a call of an unknown tool or with bad arguments

    class Status(models.TextChoices):
        PENDING = "pending"  # waits for the user
        ACCEPTED = "accepted"  # the user said yes; the worker is applying or running it
        REJECTED = "rejected"
        APPLIED = "applied"
        CONFLICT = "conflict"  # the file changed since the diff was made: not applied
        SKIPPED = "skipped"
        RUNNING = "running"
        RAN = "ran"
        ANSWERED = "answered"
        DONE = "done"
        FAILED = "failed"

    turn = models.ForeignKey(AgentTurn, on_delete=models.CASCADE, related_name="steps")
    index = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DONE)
    tool_call_id = models.CharField(max_length=100, blank=True)
    arguments = models.JSONField(default=dict, blank=True)
    # What the model is told (trimmed to VIBECODE_AGENT_OUTPUT_CHARS).
    result = models.TextField(blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    # File changes: the unified diff shown for review, the new content, and the etag it is based
    # on (empty with ``base_exists`` false: the file is new).
    path = models.CharField(max_length=1024, blank=True)
    diff = models.TextField(blank=True)
    new_content = models.TextField(blank=True)
    base_etag = models.CharField(max_length=64, blank=True)
    base_exists = models.BooleanField(default=False)
    # Commands: what runs, and the run's id while it does (Stop kills it).
    command = models.JSONField(default=list, blank=True)
    run_id = models.CharField(max_length=32, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    # The user's answer to ask_user.
    answer = models.TextField(blank=True)
    version = models.PositiveBigIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["turn", "index"]
        constraints = [models.UniqueConstraint(fields=["turn", "index"], name="assistant_agent_step_index")]

    def __str__(self) -> str:
        return f"{self.kind} {self.status}"


class AgentCheckpoint(models.Model):
    """A file as it was before the turn first changed it, for Undo: its bytes, or its absence.
    ``etag_after`` is the etag of what the agent last wrote, so Undo sees later edits."""

    turn = models.ForeignKey(AgentTurn, on_delete=models.CASCADE, related_name="checkpoints")
    path = models.CharField(max_length=1024)
    existed = models.BooleanField()
    content = models.BinaryField(default=b"")
    etag_after = models.CharField(max_length=64, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["turn", "path"], name="assistant_checkpoint_path")]

    def __str__(self) -> str:
        return f"Checkpoint of {self.path}"


class AgentAuditEvent(models.Model):
    """What the agent did in a workspace, attributed to the user it worked for. Append-only; it
    outlives the conversation (cleared chats keep their audit) and the session row."""

    class Action(models.TextChoices):
        TURN = "turn"
        WRITE = "write"
        RUN = "run"
        UNDO = "undo"
        STOP = "stop"

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    session_public_id = models.CharField(max_length=16, db_index=True)
    turn_id = models.BigIntegerField(null=True)
    action = models.CharField(max_length=16, choices=Action.choices)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.action} {self.session_public_id} by {self.actor}"
