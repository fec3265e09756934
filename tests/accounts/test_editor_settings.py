"""Editor settings per user: GET/PUT /api/vibecode/settings/editor."""

from __future__ import annotations

import pytest

from accounts_app.models import EditorSettings

pytestmark = pytest.mark.django_db

URL = "/api/vibecode/settings/editor"
DEFAULTS = {
    "tab_size": 4,
    "insert_spaces": True,
    "word_wrap": False,
    "minimap": False,
    "font_size": 14,
    "theme": "system",
    "autosave": "off",
    "autosave_delay_ms": 1000,
}


def test_a_new_user_gets_the_defaults_and_no_row(alice_api):
    response = alice_api.get(URL)
    assert response.status_code == 200
    body = response.json()
    assert {key: body[key] for key in DEFAULTS} == DEFAULTS
    assert not EditorSettings.objects.exists()


def test_a_put_changes_only_what_it_names(alice_api):
    response = alice_api.put(URL, {"tab_size": 2, "minimap": True}, format="json")
    assert response.status_code == 200
    assert response.json()["tab_size"] == 2 and response.json()["minimap"] is True
    body = alice_api.get(URL).json()
    assert body["tab_size"] == 2 and body["minimap"] is True
    assert body["font_size"] == 14 and body["insert_spaces"] is True
    alice_api.put(URL, {"autosave": "afterDelay", "autosave_delay_ms": 1500, "theme": "light"}, format="json")
    body = alice_api.get(URL).json()
    assert (body["tab_size"], body["autosave"], body["autosave_delay_ms"], body["theme"]) == (
        2,
        "afterDelay",
        1500,
        "light",
    )
    assert EditorSettings.objects.count() == 1


def test_all_autosave_modes_are_accepted(alice_api):
    for mode in ("off", "afterDelay", "onFocusChange"):
        assert alice_api.put(URL, {"autosave": mode}, format="json").json()["autosave"] == mode


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tab_size": 0}, "tab_size"),
        ({"tab_size": 9}, "tab_size"),
        ({"tab_size": "four"}, "tab_size"),
        ({"font_size": 7}, "font_size"),
        ({"font_size": 33}, "font_size"),
        ({"theme": "solarized"}, "theme"),
        ({"autosave": "always"}, "autosave"),
        ({"autosave_delay_ms": 50}, "autosave_delay_ms"),
        ({"autosave_delay_ms": 600_000}, "autosave_delay_ms"),
        ({"minimap": "sometimes"}, "minimap"),
        ({"word_wrap": None}, "word_wrap"),
    ],
)
def test_bad_values_answer_400_with_a_code_and_change_nothing(alice_api, change, field):
    alice_api.put(URL, {"tab_size": 2}, format="json")
    response = alice_api.put(URL, {"minimap": True, **change}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_editor_settings"
    assert field in body["errors"]
    assert body["detail"]
    after = alice_api.get(URL).json()
    assert after["tab_size"] == 2 and after["minimap"] is False


def test_an_unknown_setting_answers_400_unknown_setting(alice_api):
    response = alice_api.put(URL, {"tabsize": 2}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "unknown_setting"
    assert response.json()["unknown"] == ["tabsize"]
    assert not EditorSettings.objects.exists()


def test_a_body_that_is_not_an_object_answers_400(alice_api):
    response = alice_api.put(URL, [1, 2], format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_editor_settings"


def test_malformed_json_answers_400_parse_error(alice_api):
    response = alice_api.put(URL, "{", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


def test_settings_are_each_users_own(alice_api, bob_api):
    alice_api.put(URL, {"tab_size": 8, "theme": "dark"}, format="json")
    bob = bob_api.get(URL).json()
    assert bob["tab_size"] == 4 and bob["theme"] == "system"
    bob_api.put(URL, {"tab_size": 3}, format="json")
    assert alice_api.get(URL).json()["tab_size"] == 8


def test_anonymous_callers_are_refused(api):
    assert api.get(URL).status_code == 401
    assert api.put(URL, {"tab_size": 2}, format="json").status_code == 401
