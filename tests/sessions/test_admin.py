"""The admin of sessions, quotas and the audit log, on the real Docker engine."""

from __future__ import annotations

import docker
import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from sessions_app import services
from sessions_app.models import Quota, Session, SessionEvent

pytestmark = [pytest.mark.django_db, pytest.mark.docker]

ENGINE = docker.from_env()
SESSIONS = "/admin/sessions_app/session/"
EVENTS = "/admin/sessions_app/sessionevent/"
QUOTAS = "/admin/sessions_app/quota/"
STAFF_PERMISSIONS = [
    "view_session",
    "change_session",
    "add_session",
    "delete_session",
    "view_sessionevent",
    "change_sessionevent",
    "add_sessionevent",
    "delete_sessionevent",
    "view_quota",
    "change_quota",
    "add_quota",
]


@pytest.fixture
def staff_client(staff) -> Client:
    """Staff holding every model permission: what is refused is refused by the admin itself."""
    staff.user_permissions.set(
        Permission.objects.filter(content_type__app_label="sessions_app", codename__in=STAFF_PERMISSIONS)
    )
    client = Client()
    client.force_login(staff)
    return client


def _row(user, name: str, status: str = Session.Status.SUSPENDED) -> Session:
    """A session row without a container, for what only reads or refuses."""
    session = Session(owner=user, name=name, status=status, image="vibecode-sandbox:latest")
    session.container_name = f"vibecode-{user.pk}-{session.public_id}"
    session.volume_name = f"{session.container_name}-ws"
    session.save()
    return session


def _action(client: Client, action: str, *sessions: Session, **extra: str):
    data = {"action": action, "_selected_action": [str(session.pk) for session in sessions], **extra}
    return client.post(SESSIONS, data, follow=True)


def _messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def _container_status(session: Session) -> str:
    return ENGINE.containers.get(session.container_name).status


def test_it_suspends_and_resumes_sessions_through_the_services(staff_client, staff, alice, sandboxes):
    session = services.session_create(user=alice, name="nightly")

    suspended = _action(staff_client, "suspend_sessions", session)
    assert suspended.redirect_chain[-1][0] == SESSIONS
    assert _messages(suspended) == [f"Suspended 1 session(s): {session.public_id}."]
    assert _container_status(session) == "exited"
    assert Session.objects.get(pk=session.pk).status == Session.Status.SUSPENDED

    resumed = _action(staff_client, "resume_sessions", session)
    assert _messages(resumed) == [f"Resumed 1 session(s): {session.public_id}."]
    assert _container_status(session) == "running"
    assert Session.objects.get(pk=session.pk).status == Session.Status.RUNNING

    by_staff = SessionEvent.objects.filter(session=session, actor=staff).order_by("created_at")
    assert [event.action for event in by_staff] == ["suspend", "resume"]


def test_it_reports_each_failure_beside_the_successes(staff_client, alice, sandboxes):
    running = services.session_create(user=alice, name="fine")
    busy = _row(alice, "half made", status=Session.Status.CREATING)
    response = _action(staff_client, "suspend_sessions", running, busy)
    assert _messages(response) == [
        f"Suspended 1 session(s): {running.public_id}.",
        f"Failed for {busy.public_id} (half made): The session is creating; it can be suspended once that "
        "is over.",
    ]
    levels = [message.level_tag for message in response.context["messages"]]
    assert levels == ["success", "error"]
    assert _container_status(running) == "exited"
    assert Session.objects.get(pk=busy.pk).status == Session.Status.CREATING


def test_it_asks_to_confirm_before_deleting_sessions_with_their_files(staff_client, staff, alice, sandboxes):
    session = services.session_create(user=alice, name="to be deleted")

    confirm = _action(staff_client, "delete_sessions", session)
    assert confirm.status_code == 200 and confirm.redirect_chain == []
    text = confirm.content.decode()
    assert "to be deleted" in text and session.public_id in text and "alice" in text
    assert "/workspace" in text and "permanently deleted" in text
    assert "1 of them is running" in text
    assert 'name="post" value="yes"' in text and 'value="delete_sessions"' in text
    assert _container_status(session) == "running", "asking changes nothing"
    assert Session.objects.filter(pk=session.pk).exists()

    deleted = _action(staff_client, "delete_sessions", session, post="yes")
    assert deleted.redirect_chain[-1][0] == SESSIONS
    assert _messages(deleted) == [
        f"Deleted (with their workspace volumes) 1 session(s): {session.public_id}."
    ]
    assert not Session.objects.filter(pk=session.pk).exists()
    assert ENGINE.containers.list(all=True, filters={"name": session.container_name}) == []
    assert ENGINE.volumes.list(filters={"name": session.volume_name}) == []
    event = SessionEvent.objects.get(session_public_id=session.public_id, action="delete")
    assert event.actor == staff


def test_it_offers_no_add_edit_or_built_in_delete_of_sessions(staff_client, alice):
    session = _row(alice, "untouchable")
    changelist = staff_client.get(SESSIONS)
    assert changelist.status_code == 200 and changelist.context["title"] == "Sessions"
    actions = dict(changelist.context["action_form"].fields["action"].choices)
    assert set(actions) == {"", "suspend_sessions", "resume_sessions", "delete_sessions"}
    assert actions["delete_sessions"] == "Delete (removes the workspace volume)"
    assert staff_client.get(f"{SESSIONS}add/").status_code == 403

    page = staff_client.get(f"{SESSIONS}{session.pk}/change/")
    assert page.status_code == 200, "staff may look"
    assert b'name="_save"' not in page.content
    assert f"{SESSIONS}{session.pk}/delete/".encode() not in page.content
    assert staff_client.post(f"{SESSIONS}{session.pk}/change/", {"name": "renamed"}).status_code == 403
    assert staff_client.get(f"{SESSIONS}{session.pk}/delete/").status_code == 403
    assert staff_client.post(f"{SESSIONS}{session.pk}/delete/", {"post": "yes"}).status_code == 403

    refused = _action(staff_client, "delete_selected", session, post="yes")
    assert "No action selected." in _messages(refused)
    assert Session.objects.get(pk=session.pk).name == "untouchable"


def test_it_keeps_non_staff_out_of_the_admin(alice, sandboxes):
    session = _row(alice, "mine")
    client = Client()
    client.force_login(alice)
    response = client.get(SESSIONS)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    data = {"action": "delete_sessions", "_selected_action": [session.pk], "post": "yes"}
    response = client.post(SESSIONS, data)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert Session.objects.filter(pk=session.pk).exists()
    assert Client().get(EVENTS)["Location"].startswith("/admin/login/")


def test_it_shows_session_events_read_only(staff_client, alice):
    session = _row(alice, "audited")
    event = services.session_event_record(session=session, action=SessionEvent.Action.SUSPEND, actor=alice)

    changelist = staff_client.get(EVENTS)
    assert changelist.status_code == 200
    assert session.public_id in changelist.content.decode()
    assert changelist.context["action_form"] is None, "no actions at all, so no bulk delete"
    assert staff_client.get(f"{EVENTS}?action=suspend").status_code == 200
    assert staff_client.get(f"{EVENTS}?q={session.public_id}").context["cl"].result_count == 1

    assert staff_client.get(f"{EVENTS}add/").status_code == 403
    page = staff_client.get(f"{EVENTS}{event.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert staff_client.post(f"{EVENTS}{event.pk}/change/", {"action": "delete"}).status_code == 403
    assert staff_client.post(f"{EVENTS}{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert SessionEvent.objects.get(pk=event.pk).action == "suspend"


def test_it_lists_quotas_with_their_overrides(staff_client, alice):
    Quota.objects.create(user=alice, max_sessions=3, memory_mb=512)
    changelist = staff_client.get(QUOTAS)
    assert changelist.status_code == 200
    text = changelist.content.decode()
    assert "alice" in text and "512" in text
    assert [(q.user.username, q.max_sessions) for q in changelist.context["cl"].result_list] == [("alice", 3)]


def test_staff_set_a_users_disk_quota_and_refuse_one_too_small(staff_client, alice):
    form = {"user": str(alice.pk), "disk_mb": "64"}
    response = staff_client.post(f"{QUOTAS}add/", form)
    assert response.status_code == 302, response.content
    assert Quota.objects.get(user=alice).disk_mb == 64
    quota = Quota.objects.get(user=alice)
    too_small = staff_client.post(f"{QUOTAS}{quota.pk}/change/", {"user": str(alice.pk), "disk_mb": "8"})
    assert too_small.status_code == 200  # the form again, with the constraint's error
    assert "quota_disk_min" in too_small.content.decode()
    assert Quota.objects.get(user=alice).disk_mb == 64
