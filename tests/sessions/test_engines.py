"""Many engines (docs/engines.md): placement over ``local`` and a second real engine ``b`` (a
private dockerd, tests/sessions/conftest.py), every operation routed to a workspace's engine,
capacity, drained and disabled engines, and an engine that dies and comes back."""

from __future__ import annotations

import base64
import hashlib
import time

import docker
import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from rest_framework.test import APIClient

from sessions_app import engines
from sessions_app.models import Engine, Session, SessionEvent
from sessions_app.operations import sessions_cleanup, sessions_reconcile
from sessions_app.runtime import get_runtime
from tests.accounts.test_auth_api import assert_error
from tests.conftest import bearer
from vibecode_project.env import env_engines

pytestmark = pytest.mark.django_db


CREATE = "/api/vibecode/sessions/create"


def create(api) -> dict:
    response = api.post(CREATE, {}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def save(api, session_id: str, path: str, content: bytes):
    body = {"path": path, "content": base64.b64encode(content).decode(), "encoding": "base64"}
    return api.put(f"/api/vibecode/sessions/{session_id}/files/content", body, format="json")


def read(api, session_id: str, path: str):
    return api.get(f"/api/vibecode/sessions/{session_id}/files/content", {"path": path})


def content(api, session_id: str, path: str) -> bytes:
    response = read(api, session_id, path)
    assert response.status_code == 200, response.content
    body = response.json()
    return base64.b64decode(body["content"]) if body["encoding"] == "base64" else body["content"].encode()


def on_engine(client: docker.DockerClient, name: str) -> bool:
    try:
        client.containers.get(name)
    except docker.errors.NotFound:
        return False
    return True


def set_engine(name: str, **fields) -> None:
    engines.engines_sync_from_env()
    Engine.objects.filter(name=name).update(**fields)


def staff_api(staff) -> APIClient:
    api = APIClient()
    api.credentials(**bearer(staff))
    return api


def test_workspaces_of_several_users_spread_over_both_engines(engine_b, alice_api, bob_api, staff):
    made = [create(alice_api), create(bob_api), create(staff_api(staff)), create(alice_api)]
    placed = [item["engine"] for item in made]
    # Fewest running first: never two more on one engine than on the other.
    assert sorted(placed) == ["b", "b", "local", "local"], placed
    local = docker.DockerClient(base_url=settings.DOCKER_HOST, version=settings.DOCKER_API_VERSION)
    on_b = engine_b.client()
    for item in made:
        session = Session.objects.get(public_id=item["session_id"])
        assert session.engine == item["engine"]
        assert on_engine(on_b, session.container_name) == (session.engine == "b")
        assert on_engine(local, session.container_name) == (session.engine == "local")
    listed = alice_api.get("/api/vibecode/sessions").json()
    assert {item["engine"] for item in listed} <= {"local", "b"} and all("engine" in item for item in listed)


def test_files_exec_stats_suspend_resume_and_delete_work_on_engine_b(engine_b, alice_api):
    set_engine("local", state=Engine.State.DISABLED)
    session_id = create(alice_api)["session_id"]
    session = Session.objects.get(public_id=session_id)
    assert session.engine == "b"
    on_b = engine_b.client()
    assert on_b.containers.get(session.container_name).status == "running"

    blob = bytes(range(256)) * 16
    assert save(alice_api, session_id, "data/blob.bin", blob).status_code == 200
    got = read(alice_api, session_id, "data/blob.bin").json()
    assert base64.b64decode(got["content"]) == blob
    result = alice_api.post(
        f"/api/vibecode/sessions/{session_id}/exec", {"argv": ["sha256sum", "data/blob.bin"]}, format="json"
    ).json()
    assert result["exit_code"] == 0 and result["stdout"].startswith(hashlib.sha256(blob).hexdigest())
    # The bytes are on b's volume, read by b's engine.
    exit_code, output = on_b.containers.get(session.container_name).exec_run(["cat", "data/blob.bin"])
    assert exit_code == 0 and output == blob
    stats = alice_api.get(f"/api/vibecode/sessions/{session_id}/stats")
    assert stats.status_code == 200, stats.content

    assert alice_api.post(f"/api/vibecode/sessions/{session_id}/suspend").status_code == 200
    assert on_b.containers.get(session.container_name).status == "exited"
    assert alice_api.post(f"/api/vibecode/sessions/{session_id}/resume").status_code == 200
    assert content(alice_api, session_id, "data/blob.bin") == blob

    assert alice_api.delete(f"/api/vibecode/sessions/{session_id}?force=true").status_code == 204
    assert not on_engine(on_b, session.container_name)
    assert session.volume_name not in {volume.name for volume in on_b.volumes.list()}


def test_full_engines_answer_503_capacity(engine_b, alice_api, bob_api):
    set_engine("local", max_sessions=1)
    set_engine("b", max_sessions=1)
    first, second = create(alice_api), create(bob_api)
    assert {first["engine"], second["engine"]} == {"local", "b"}
    refused = assert_error(alice_api.post(CREATE, {}, format="json"), 503, "capacity")
    assert "full" in refused["detail"]
    # The refused create left no session behind; a suspend makes room again.
    assert Session.objects.count() == 2
    assert alice_api.post(f"/api/vibecode/sessions/{first['session_id']}/suspend").status_code == 200
    assert create(alice_api)["engine"] == first["engine"]


def test_draining_and_disabled_engines_get_no_new_workspaces(engine_b, alice_api, bob_api, staff):
    set_engine("b", state=Engine.State.DRAINING)
    assert {create(alice_api)["engine"], create(bob_api)["engine"]} == {"local"}
    # The admin's actions go through the service, audited.
    engines.engine_set_state(engine=Engine.objects.get(name="b"), state=Engine.State.ACTIVE, actor=staff)
    engines.engine_set_state(
        engine=Engine.objects.get(name="local"), state=Engine.State.DISABLED, actor=staff
    )
    assert SessionEvent.objects.filter(action=SessionEvent.Action.ENGINE, actor=staff).count() == 2
    assert create(alice_api)["engine"] == "b"
    engines.engine_set_state(engine=Engine.objects.get(name="b"), state=Engine.State.DISABLED, actor=staff)
    assert_error(bob_api.post(CREATE, {}, format="json"), 503, "capacity")


def test_an_engine_without_the_sandbox_image_gets_no_workspaces(engine_b, alice_api):
    set_engine("local", state=Engine.State.DISABLED)
    on_b = engine_b.client()
    image = on_b.images.get(settings.VIBECODE_SANDBOX_IMAGE)
    image.tag("vibecode-engines-test", "kept")  # the image stays, under another name only
    on_b.images.remove(settings.VIBECODE_SANDBOX_IMAGE)
    try:
        assert_error(alice_api.post(CREATE, {}, format="json"), 503, "capacity")
    finally:
        repository, _, tag = settings.VIBECODE_SANDBOX_IMAGE.rpartition(":")
        image.tag(repository, tag)
        on_b.images.remove("vibecode-engines-test:kept")


def test_killing_engine_b_affects_only_its_workspaces_and_restarting_brings_them_back(
    engine_b, alice_api, bob_api, staff, client
):
    on_b_id = create(alice_api)["session_id"]
    on_local_id = create(bob_api)["session_id"]
    assert Session.objects.get(public_id=on_b_id).engine == "b"
    assert Session.objects.get(public_id=on_local_id).engine == "local"
    assert save(alice_api, on_b_id, "keep.txt", b"on b\n").status_code == 200
    assert save(bob_api, on_local_id, "keep.txt", b"on local\n").status_code == 200

    engine_b.kill_dockerd()
    started = time.monotonic()
    refused = assert_error(read(alice_api, on_b_id, "keep.txt"), 503, "engine_unavailable")
    assert time.monotonic() - started < 5
    assert "'b'" in refused["detail"] and refused["engine"] == "b"
    assert_error(
        alice_api.post(f"/api/vibecode/sessions/{on_b_id}/exec", {"argv": ["true"]}, format="json"),
        503,
        "engine_unavailable",
    )
    # local's workspace works on.
    assert content(bob_api, on_local_id, "keep.txt") == b"on local\n"
    assert save(bob_api, on_local_id, "more.txt", b"still\n").status_code == 200
    # New workspaces go to local while b is down.
    assert create(staff_api(staff))["engine"] == "local"
    # Staff see which engine is down.
    client.force_login(staff)
    health = client.get("/api/health").json()
    assert health["status"] == "degraded"
    assert health["checks"]["docker"]["status"] == "ok"
    assert health["checks"]["engines"]["status"] == "error"
    assert "down: b" in health["checks"]["engines"]["detail"]
    # Reconcile and cleanup with b down skip b's workspace and go on with local's: a local
    # container stopped behind our back is still found.
    local = docker.DockerClient(base_url=settings.DOCKER_HOST, version=settings.DOCKER_API_VERSION)
    local.containers.get(Session.objects.get(public_id=on_local_id).container_name).stop(timeout=1)
    report = sessions_reconcile()
    assert report.counts["engine_unavailable"] >= 1, report.actions
    assert Session.objects.get(public_id=on_b_id).status == Session.Status.RUNNING
    assert Session.objects.get(public_id=on_local_id).status == Session.Status.SUSPENDED
    assert sessions_cleanup().counts["engine_unavailable"] == 1

    engine_b.start()
    sessions_reconcile()
    session = Session.objects.get(public_id=on_b_id)
    if session.status == Session.Status.SUSPENDED:  # dockerd stopped its containers on restart
        assert alice_api.post(f"/api/vibecode/sessions/{on_b_id}/resume").status_code == 200
    assert content(alice_api, on_b_id, "keep.txt") == b"on b\n"
    assert client.get("/api/health").json()["checks"]["engines"]["status"] == "ok"


def test_single_engine_placement_asks_no_engine(alice_api, sandboxes, monkeypatch):
    """With only local (no configuration), placement never calls Docker: creates are as before."""
    runtime = get_runtime()
    calls = []
    for name in ("image_id", "engine_memory_bytes"):
        original = getattr(runtime, name)
        monkeypatch.setattr(
            runtime, name, lambda *a, _o=original, _n=name, **k: (calls.append(_n), _o(*a, **k))[1]
        )
    made = create(alice_api)
    assert made["engine"] == "local" and calls == []
    assert list(Engine.objects.values_list("name", "state")) == [("local", "active")]


def test_vibecode_engines_parses_names_urls_and_tls_dirs(monkeypatch):
    monkeypatch.setenv("VIBECODE_ENGINES", " b=unix:///tmp/b.sock, gpu-1=tcp://10.0.0.5:2376 ")
    monkeypatch.setenv("VIBECODE_ENGINE_GPU_1_TLS_DIR", "/etc/vibecode/gpu-1")
    assert env_engines("VIBECODE_ENGINES") == {
        "b": {"url": "unix:///tmp/b.sock", "tls_dir": ""},
        "gpu-1": {"url": "tcp://10.0.0.5:2376", "tls_dir": "/etc/vibecode/gpu-1"},
    }
    for bad in ("local=unix:///x.sock", "B=unix:///x", "b", "b=http://x", "b=unix:///x,b=unix:///y"):
        monkeypatch.setenv("VIBECODE_ENGINES", bad)
        with pytest.raises(ImproperlyConfigured):
            env_engines("VIBECODE_ENGINES")


def test_engines_from_the_environment_get_rows_and_are_routed(settings, engine_b):
    settings.VIBECODE_ENGINES = {"envb": {"url": engine_b.docker_host, "tls_dir": ""}}
    names = {engine.name: engine.docker_url for engine in engines.engines_sync_from_env()}
    assert names["local"] == settings.DOCKER_HOST and names["envb"] == engine_b.docker_host
    assert get_runtime().ping(engine="envb").startswith("Docker Engine")  # type: ignore[call-arg]
    assert_error_unknown = pytest.raises(Exception, match="No container engine named 'nowhere'")
    with assert_error_unknown:
        get_runtime().ping(engine="nowhere")  # type: ignore[call-arg]


def test_staff_add_drain_disable_and_activate_engines_in_admin(staff, alice):
    staff.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="sessions_app",
            codename__in=["view_engine", "add_engine", "change_engine", "delete_engine"],
        )
    )
    client = Client()
    client.force_login(staff)
    added = client.post(
        "/admin/sessions_app/engine/add/",
        {
            "name": "c",
            "docker_url": "unix:///run/c/docker.sock",
            "tls_dir": "",
            "max_sessions": 3,
            "memory_reserve_mb": 0,
        },
        follow=True,
    )
    assert added.status_code == 200 and Engine.objects.get(name="c").max_sessions == 3
    engine = Engine.objects.get(name="c")
    for action, state in (
        ("drain_engines", "draining"),
        ("disable_engines", "disabled"),
        ("activate_engines", "active"),
    ):
        response = client.post(
            "/admin/sessions_app/engine/",
            {"action": action, "_selected_action": [str(engine.pk)]},
            follow=True,
        )
        assert response.status_code == 200
        assert Engine.objects.get(name="c").state == state
    assert [
        event.detail["state"] for event in SessionEvent.objects.filter(action="engine").order_by("pk")
    ] == [
        "draining",
        "disabled",
        "active",
    ]
    listing = client.get("/admin/sessions_app/engine/")
    assert b"unix:///run/c/docker.sock" in listing.content
    # An engine that holds a workspace cannot be deleted; an empty one can.
    Session.objects.create(
        owner=alice, name="w", engine="c", container_name="vibecode-x-c", volume_name="vibecode-x-c-ws"
    )
    assert client.get(f"/admin/sessions_app/engine/{engine.pk}/delete/").status_code == 403
