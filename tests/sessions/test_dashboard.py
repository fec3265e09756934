"""The dashboard at ``/`` and its forms, through the Django test client on the real Docker engine."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest
from django.test import Client

import sessions_app.runtime.docker as docker_backend
from sessions_app import services
from sessions_app.models import Quota, Session, SessionEvent

pytestmark = [pytest.mark.django_db, pytest.mark.docker]

ENGINE = docker.from_env()


@pytest.fixture
def alice_client(alice) -> Client:
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def bob_client(bob) -> Client:
    client = Client()
    client.force_login(bob)
    return client


@pytest.fixture
def unreachable_engine(settings, monkeypatch, tmp_path) -> Iterator[None]:
    monkeypatch.setattr(docker_backend, "_client", None)
    settings.DOCKER_HOST = f"unix://{tmp_path}/nothing-listens-here.sock"
    yield
    # Drop the client bound to the dead socket; monkeypatch then puts the real one back.
    client = docker_backend._client
    if client is not None:
        client.close()
    monkeypatch.setattr(docker_backend, "_client", None)


def _row(user, name: str, status: str = Session.Status.SUSPENDED) -> Session:
    """A session row without a container, for pages that only read the database."""
    session = Session(owner=user, name=name, status=status, image="vibecode-sandbox:latest")
    session.container_name = f"vibecode-{user.pk}-{session.public_id}"
    session.volume_name = f"{session.container_name}-ws"
    session.save()
    return session


def _container_status(session: Session) -> str:
    return ENGINE.containers.get(session.container_name).status


def _volume_exists(name: str) -> bool:
    return bool(ENGINE.volumes.list(filters={"name": name}))


def _text(response) -> str:
    return response.content.decode()


def test_it_asks_anonymous_visitors_to_sign_in(client):
    assert client.get("/")["Location"].startswith("/login")
    response = client.post("/sessions/create", {"name": "sneaky"})
    assert response.status_code == 302 and response["Location"].startswith("/login")
    assert Session.objects.count() == 0


def test_it_shows_an_empty_state_and_the_create_form(alice_client):
    page = _text(alice_client.get("/"))
    assert "Your workspaces" in page
    assert "No workspaces yet" in page
    assert 'action="/sessions/create"' in page
    assert "csrfmiddlewaretoken" in page
    assert "vibecode/dashboard" in page, "the dashboard links its own stylesheet"


def test_it_lists_only_the_users_own_sessions(alice_client, alice, bob):
    mine = _row(alice, "alice notes")
    _row(alice, "alice broken", status=Session.Status.ERROR)
    theirs = _row(bob, "bob secret")
    page = _text(alice_client.get("/"))
    assert "alice notes" in page and mine.public_id in page
    assert "alice broken" in page
    assert 'class="badge badge-suspended"' in page and 'class="badge badge-error"' in page
    assert "bob secret" not in page and theirs.public_id not in page
    assert "just now" in page


def test_it_creates_suspends_resumes_and_deletes_through_the_page(alice_client, alice, sandboxes):
    created = alice_client.post("/sessions/create", {"name": "demo"}, follow=True)
    assert created.redirect_chain == [("/", 302)]
    session = Session.objects.get(owner=alice)
    assert session.name == "demo" and session.status == Session.Status.RUNNING
    assert _container_status(session) == "running"
    page = _text(created)
    assert "Created “demo”" in page
    assert 'class="badge badge-running"' in page
    assert f'action="/sessions/{session.public_id}/suspend"' in page

    suspended = alice_client.post(f"/sessions/{session.public_id}/suspend", follow=True)
    assert suspended.redirect_chain == [("/", 302)]
    assert "Suspended “demo”" in _text(suspended)
    assert 'class="badge badge-suspended"' in _text(suspended)
    assert _container_status(session) == "exited"

    resumed = alice_client.post(f"/sessions/{session.public_id}/resume", follow=True)
    assert "“demo” is running again" in _text(resumed)
    assert _container_status(session) == "running"

    confirm = alice_client.get(f"/sessions/{session.public_id}/delete")
    assert confirm.status_code == 200
    text = _text(confirm)
    assert "Delete “demo”?" in text
    assert "/workspace</code> will be permanently deleted" in text
    assert 'name="force"' in text, "a running session needs the force checkbox"
    assert Session.objects.filter(pk=session.pk).exists(), "GET only asks"

    deleted = alice_client.post(f"/sessions/{session.public_id}/delete", {"force": "on"}, follow=True)
    assert deleted.redirect_chain == [("/", 302)]
    assert "Deleted “demo” and its files" in _text(deleted)
    assert not Session.objects.filter(pk=session.pk).exists()
    assert ENGINE.containers.list(all=True, filters={"name": session.container_name}) == []
    assert not _volume_exists(session.volume_name)
    actions = SessionEvent.objects.filter(session_public_id=session.public_id).order_by("created_at")
    assert [event.action for event in actions] == ["create", "suspend", "resume", "delete"]
    assert all(event.actor == alice for event in actions)


def test_it_names_a_default_when_the_name_is_left_empty(alice_client, alice, sandboxes):
    alice_client.post("/sessions/create", {"name": "   "})
    assert Session.objects.get(owner=alice).name == "Workspace 1"


def test_it_keeps_a_running_session_when_delete_is_not_forced(alice_client, alice, sandboxes):
    session = services.session_create(user=alice, name="precious")
    response = alice_client.post(f"/sessions/{session.public_id}/delete", follow=True)
    assert response.redirect_chain == [(f"/sessions/{session.public_id}/delete", 302)]
    text = _text(response)
    assert "“precious” is running, so it was not deleted" in text
    assert 'role="alert"' in text
    assert Session.objects.get(pk=session.pk).status == Session.Status.RUNNING
    assert _container_status(session) == "running"
    assert _volume_exists(session.volume_name)


def test_it_deletes_a_suspended_session_without_force(alice_client, alice, sandboxes):
    session = services.session_suspend(session=services.session_create(user=alice, name="old"), actor=alice)
    confirm = _text(alice_client.get(f"/sessions/{session.public_id}/delete"))
    assert 'name="force"' not in confirm
    response = alice_client.post(f"/sessions/{session.public_id}/delete", follow=True)
    assert "Deleted “old” and its files" in _text(response)
    assert not Session.objects.filter(pk=session.pk).exists()
    assert not _volume_exists(session.volume_name)


def test_it_shows_quota_exceeded_as_a_readable_message(alice_client, alice):
    Quota.objects.create(user=alice, max_sessions=0)
    response = alice_client.post("/sessions/create", {"name": "one too many"}, follow=True)
    assert response.status_code == 200 and response.redirect_chain == [("/", 302)]
    text = _text(response)
    assert "Could not create the workspace. You already have 0 session(s), your limit" in text
    assert '"code"' not in text and "quota_exceeded" not in text
    assert Session.objects.count() == 0


def test_it_shows_an_unreachable_engine_as_a_readable_message(alice_client, alice, unreachable_engine):
    response = alice_client.post("/sessions/create", {"name": "offline"}, follow=True)
    text = _text(response)
    assert "Could not create the workspace. The container engine is not reachable." in text
    assert "Traceback" not in text and "runtime_unavailable" not in text
    session = Session.objects.get(owner=alice)
    assert session.status == Session.Status.ERROR
    # The failed workspace is listed with its reason and can be retried or deleted.
    assert 'class="badge badge-error"' in text
    assert f'action="/sessions/{session.public_id}/resume"' in text


def test_it_refuses_a_bad_name_with_a_readable_message(alice_client, alice):
    response = alice_client.post("/sessions/create", {"name": "x" * 101}, follow=True)
    assert "The name is 101 characters long; the limit is 100." in _text(response)
    assert Session.objects.count() == 0


def test_it_answers_404_for_another_users_session(alice, bob_client, sandboxes):
    session = services.session_create(user=alice, name="alice only")
    base = f"/sessions/{session.public_id}"
    for response in (
        bob_client.get(f"{base}/delete"),
        bob_client.post(f"{base}/suspend"),
        bob_client.post(f"{base}/resume"),
        bob_client.post(f"{base}/delete", {"force": "on"}),
    ):
        assert response.status_code == 404
        assert "Workspace not found" in _text(response)
        assert "alice only" not in _text(response)
    assert bob_client.get("/sessions/nosuchsession/delete").status_code == 404
    assert Session.objects.get(pk=session.pk).status == Session.Status.RUNNING
    assert _container_status(session) == "running"


def test_it_changes_sessions_only_by_post(alice_client, alice):
    session = _row(alice, "quiet")
    assert alice_client.get("/sessions/create").status_code == 405
    assert alice_client.get(f"/sessions/{session.public_id}/suspend").status_code == 405
    assert alice_client.get(f"/sessions/{session.public_id}/resume").status_code == 405
    assert alice_client.post("/").status_code == 405
    assert Session.objects.get(pk=session.pk).status == Session.Status.SUSPENDED


def test_it_rejects_posts_without_a_csrf_token(alice, sandboxes):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    session = _row(alice, "guarded")
    assert client.post("/sessions/create", {"name": "forged"}).status_code == 403
    assert client.post(f"/sessions/{session.public_id}/delete").status_code == 403
    assert list(Session.objects.values_list("name", flat=True)) == ["guarded"]
