"""The workbench state API: GET/PUT /api/vibecode/sessions/{id}/workbench. No container needed:
the state is the page's layout and never reaches the sandbox."""

from __future__ import annotations

import secrets

import pytest

from sessions_app.models import Session, WorkbenchState

pytestmark = pytest.mark.django_db

STATE = {
    "tabs": [
        {"path": "main.py", "line": 12, "column": 5, "scroll_top": 180.0, "scroll_left": 0},
        {"path": "src/util.py", "line": 1, "column": 1},
    ],
    "active": "src/util.py",
    "panel_height": 260,
    "terminals": ["1", "3"],
    "active_terminal": "3",
}


def make_session(owner) -> Session:
    tag = secrets.token_hex(6)
    return Session.objects.create(
        owner=owner,
        name="work",
        status=Session.Status.RUNNING,
        container_name=f"vibecode-workbench-test-{tag}",
        volume_name=f"vibecode-workbench-test-{tag}",
        image="vibecode-sandbox:latest",
    )


@pytest.fixture
def alice_session(alice) -> Session:
    return make_session(alice)


def url(session: Session) -> str:
    return f"/api/vibecode/sessions/{session.public_id}/workbench"


def test_a_session_never_saved_has_an_empty_workbench(alice_api, alice_session):
    response = alice_api.get(url(alice_session))
    assert response.status_code == 200
    assert response.json() == {
        "tabs": [],
        "active": None,
        "panel_height": None,
        "terminals": [],
        "active_terminal": None,
        "updated_at": None,
    }


def test_it_keeps_what_was_put_and_gives_it_back(alice_api, alice_session):
    put = alice_api.put(url(alice_session), STATE, format="json")
    assert put.status_code == 200, put.json()
    body = alice_api.get(url(alice_session)).json()
    assert body["updated_at"]
    assert body["active"] == "src/util.py"
    assert body["terminals"] == ["1", "3"] and body["active_terminal"] == "3"
    assert body["panel_height"] == 260
    assert body["tabs"][0] == {
        "path": "main.py",
        "line": 12,
        "column": 5,
        "scroll_top": 180.0,
        "scroll_left": 0.0,
    }
    # Left out: the defaults.
    assert body["tabs"][1] == {
        "path": "src/util.py",
        "line": 1,
        "column": 1,
        "scroll_top": 0.0,
        "scroll_left": 0.0,
    }
    assert WorkbenchState.objects.filter(session=alice_session).count() == 1


def test_a_second_put_replaces_the_state_in_the_same_row(alice_api, alice_session):
    alice_api.put(url(alice_session), STATE, format="json")
    assert (
        alice_api.put(url(alice_session), {"tabs": [], "terminals": ["2"]}, format="json").status_code == 200
    )
    body = alice_api.get(url(alice_session)).json()
    assert body["tabs"] == [] and body["active"] is None and body["terminals"] == ["2"]
    assert WorkbenchState.objects.filter(session=alice_session).count() == 1


def test_unknown_keys_are_not_kept(alice_api, alice_session):
    alice_api.put(url(alice_session), {**STATE, "secret": "x" * 10}, format="json")
    assert "secret" not in WorkbenchState.objects.get(session=alice_session).state


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tabs": [{"path": "a.py", "line": 0}]}, "tabs"),
        ({"tabs": [{"line": 3}]}, "tabs"),
        ({"tabs": "main.py"}, "tabs"),
        ({"tabs": [{"path": "a.py"}, {"path": "a.py"}], "active": None}, "tabs"),
        ({"active": "not-open.py"}, "active"),
        ({"panel_height": -5}, "panel_height"),
        ({"panel_height": "tall"}, "panel_height"),
        ({"terminals": ["1", "1"], "active_terminal": None}, "terminals"),
        ({"terminals": ["../etc"], "active_terminal": None}, "terminals"),
        ({"active_terminal": "9"}, "active_terminal"),
    ],
)
def test_bad_state_answers_400_with_a_code_and_keeps_the_old_one(alice_api, alice_session, change, field):
    alice_api.put(url(alice_session), STATE, format="json")
    response = alice_api.put(url(alice_session), {**STATE, **change}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_workbench"
    assert field in body["errors"]
    assert body["detail"]
    assert alice_api.get(url(alice_session)).json()["active"] == "src/util.py"


def test_a_body_that_is_not_an_object_answers_400(alice_api, alice_session):
    response = alice_api.put(url(alice_session), ["main.py"], format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_workbench"


def test_malformed_json_answers_400_parse_error(alice_api, alice_session):
    response = alice_api.put(url(alice_session), "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


def test_too_many_tabs_answer_400(alice_api, alice_session):
    tabs = [{"path": f"f{i}.py"} for i in range(201)]
    response = alice_api.put(url(alice_session), {"tabs": tabs}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_workbench"


def test_a_state_over_the_size_cap_answers_413_and_keeps_the_old_one(alice_api, alice_session, settings):
    settings.VIBECODE_MAX_WORKBENCH_BYTES = 4096
    alice_api.put(url(alice_session), STATE, format="json")
    tabs = [{"path": f"{'deep/' * 100}{i}.py"} for i in range(20)]
    response = alice_api.put(url(alice_session), {"tabs": tabs}, format="json")
    assert response.status_code == 413
    assert response.json()["code"] == "workbench_too_large"
    assert response.json()["limit_bytes"] == 4096
    assert alice_api.get(url(alice_session)).json()["active"] == "src/util.py"


def test_another_users_session_answers_404(alice_api, bob_api, alice_session):
    alice_api.put(url(alice_session), STATE, format="json")
    for response in (
        bob_api.get(url(alice_session)),
        bob_api.put(url(alice_session), {"tabs": []}, format="json"),
    ):
        assert response.status_code == 404
        assert response.json()["code"] == "session_not_found"
    assert alice_api.get(url(alice_session)).json()["tabs"][0]["path"] == "main.py"


def test_anonymous_callers_are_refused(api, alice_session):
    response = api.get(url(alice_session))
    assert response.status_code == 401
    assert response.json()["code"]


def test_each_session_has_its_own_state(alice, alice_api, alice_session):
    other = make_session(alice)
    alice_api.put(url(alice_session), STATE, format="json")
    assert alice_api.get(url(other)).json()["tabs"] == []


def test_deleting_the_session_deletes_its_state(alice_api, alice_session):
    alice_api.put(url(alice_session), STATE, format="json")
    alice_session.delete()
    assert not WorkbenchState.objects.exists()
