"""Signals other apps connect in their ``AppConfig.ready()``: ``sessions_app`` imports no higher app."""

from __future__ import annotations

from django.dispatch import Signal

# Sent by the session services just before a session's sandbox is stopped (suspend) or removed
# (delete), with ``session_public_id`` and ``status`` ("suspended" or "deleted"). Receivers must
# not raise: a failing receiver must never block a suspend or a delete (use ``send_robust``).
session_stopping = Signal()
