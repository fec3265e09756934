"""Who may open a preview: hand-off tokens (single use, expiry, mismatch), preview cookies, public
and private ports, strangers, the staff switch, the audit log and check vibecode.E015. Logic on
PostgreSQL and Redis; session rows only (no container is needed to decide access)."""

from __future__ import annotations

import secrets
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core import signing
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from preview_app import services
from preview_app.checks import check_preview_cookie_domains, cookie_domain_covers
from preview_app.models import PreviewPort
from sessions_app.models import Session, SessionEvent
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def make_session(owner, status: str = Session.Status.RUNNING) -> Session:
    tag = secrets.token_hex(6)
    return Session.objects.create(
        owner=owner,
        name="web",
        status=status,
        container_name=f"vibecode-preview-test-{tag}",
        volume_name=f"vibecode-preview-test-{tag}",
        image="vibecode-sandbox:latest",
    )


@pytest.fixture
def web(alice) -> Session:
    return make_session(alice)


@pytest.fixture(autouse=True)
def _dev_origins(settings):
    settings.VIBECODE_PREVIEW_DOMAIN = "localhost"
    settings.VIBECODE_PREVIEW_SCHEME = "http"
    settings.VIBECODE_PREVIEW_PORT = "8000"
    settings.VIBECODE_PREVIEW_PUBLIC = True
    settings.VIBECODE_APP_URL = ""


def actions(session: Session) -> list[str]:
    events = SessionEvent.objects.filter(session_public_id=session.public_id)
    return list(events.values_list("action", flat=True))


# --- hosts and origins ------------------------------------------------------------------------


def test_it_parses_preview_hosts_and_nothing_else(web):
    pid = web.public_id
    assert services.parse_preview_host(f"3000-{pid}.localhost:8000") == (3000, pid)
    assert services.parse_preview_host(f"3000-{pid}.LOCALHOST") == (3000, pid)
    assert services.parse_preview_host(f"3000-{pid}.localhost.") == (3000, pid)
    for host in (
        "localhost:8000",
        "127.0.0.1:8000",
        "[::1]:8000",
        f"70000-{pid}.localhost",
        f"0-{pid}.localhost",
        f"3000-{pid}.evil.com",
        f"3000-{pid}.localhost.evil.com",
        "3000-UPPER_bad.localhost",
        f"a.3000-{pid}.localhost",
        f"3000-{pid}0lo.localhost",  # 0, l and o are not in public ids
        f"3000-{'a' * 17}.localhost",
        "",
    ):
        assert services.parse_preview_host(host) is None, host


def test_preview_urls_follow_the_settings(web, settings):
    assert services.preview_url(web, 3000) == f"http://3000-{web.public_id}.localhost:8000/"
    settings.VIBECODE_PREVIEW_DOMAIN = "preview.example.com"
    settings.VIBECODE_PREVIEW_SCHEME = "https"
    settings.VIBECODE_PREVIEW_PORT = ""
    assert services.preview_url(web, 5173) == f"https://5173-{web.public_id}.preview.example.com/"
    assert services.parse_preview_host(f"5173-{web.public_id}.preview.example.com") == (5173, web.public_id)
    assert services.parse_preview_host(f"5173-{web.public_id}.localhost") is None


# --- hand-off ---------------------------------------------------------------------------------


def test_a_handoff_token_works_once(alice, web):
    token = services.create_handoff(alice, web, 8000)
    cookie = services.redeem_handoff(web.public_id, 8000, token)
    assert cookie
    assert services.redeem_handoff(web.public_id, 8000, token) is None
    assert services.authorize_preview(web.public_id, 8000, cookie).allowed
    assert actions(web)[:3] == [services.Audit.REFUSED, services.Audit.REDEEMED, services.Audit.HANDOFF]


def test_a_handoff_token_expires(alice, web, monkeypatch):
    monkeypatch.setattr(services, "HANDOFF_SECONDS", 1)
    token = services.create_handoff(alice, web, 8000)
    key = services._handoff_key(token)
    deadline = time.monotonic() + 30
    while cache.get(key) is not None:  # the cache (Redis under make test) expires it
        assert time.monotonic() < deadline, "the token never expired"
        time.sleep(0.2)
    assert services.redeem_handoff(web.public_id, 8000, token) is None


def test_a_handoff_token_is_for_one_origin_only_and_burns_on_a_mismatch(alice, bob, web):
    token = services.create_handoff(alice, web, 8000)
    assert services.redeem_handoff(web.public_id, 8001, token) is None
    assert services.redeem_handoff(web.public_id, 8000, token) is None  # burnt by the wrong try
    other = make_session(bob)
    token = services.create_handoff(alice, web, 8000)
    assert services.redeem_handoff(other.public_id, 8000, token) is None
    assert services.redeem_handoff(web.public_id, 8000, "") is None
    assert services.redeem_handoff(web.public_id, 8000, "x" * 5000) is None
    refused = SessionEvent.objects.filter(action=services.Audit.REFUSED)
    assert {e.detail["reason"] for e in refused} >= {"handoff_mismatch", "handoff_used_or_expired"}


def test_a_token_issued_to_someone_who_is_not_the_owner_is_refused(bob, web):
    token = services.create_handoff(bob, web, 8000)
    assert services.redeem_handoff(web.public_id, 8000, token) is None


def test_a_deactivated_owner_gets_no_cookie(alice, web):
    token = services.create_handoff(alice, web, 8000)
    alice.is_active = False
    alice.save()
    assert services.redeem_handoff(web.public_id, 8000, token) is None


def test_the_preview_cookie_is_host_only_httponly_and_lax(alice, web, settings):
    header = services.preview_cookie_header(owner_cookie(alice, web, 8000))
    assert header.startswith(f"{services.PREVIEW_COOKIE}=")
    attributes = {part.split("=")[0].lower() for part in header.split("; ")[1:]}
    assert attributes == {"path", "max-age", "httponly", "samesite"}
    assert "SameSite=Lax" in header and "domain" not in header.lower()
    settings.VIBECODE_PREVIEW_SCHEME = "https"
    assert services.preview_cookie_header("").endswith("Secure")
    assert "Max-Age=0" in services.preview_cookie_header("")


# --- decisions ----------------------------------------------------------------------------------


def owner_cookie(alice, session: Session, port: int) -> str:
    cookie = services.redeem_handoff(session.public_id, port, services.create_handoff(alice, session, port))
    assert cookie
    return cookie


def test_the_owner_with_a_cookie_is_let_in_and_the_cookie_fits_one_port(alice, web):
    cookie = owner_cookie(alice, web, 8000)
    decision = services.authorize_preview(web.public_id, 8000, cookie)
    assert (decision.allowed, decision.status, decision.reason) == (True, 200, "owner")
    assert decision.session_id == web.pk and decision.session_status == "running"
    other_port = services.authorize_preview(web.public_id, 8001, cookie)
    assert (other_port.allowed, other_port.status) == (False, 302)


def test_without_a_cookie_the_visitor_is_sent_to_the_app_for_the_handoff(web):
    decision = services.authorize_preview(web.public_id, 8000, None, path="/app?x=1")
    assert (decision.allowed, decision.status, decision.reason) == (False, 302, "handoff_needed")
    url = urlsplit(decision.redirect_url)
    assert f"{url.scheme}://{url.netloc}" == "http://localhost:8000"
    assert url.path == f"/sessions/{web.public_id}/preview/8000/"
    assert parse_qs(url.query)["next"] == ["/app?x=1"]
    for hostile in ("//evil.com/", "https://evil.com", "/\\evil.com", "/a\nb"):
        decision = services.authorize_preview(web.public_id, 8000, None, path=hostile)
        assert parse_qs(urlsplit(decision.redirect_url).query)["next"] == ["/"]


def test_tampered_or_foreign_cookies_do_not_open_a_port(alice, bob, web):
    cookie = owner_cookie(alice, web, 8000)
    assert services.authorize_preview(web.public_id, 8000, cookie[:-2] + "xx").status == 302
    bobs = make_session(bob)
    assert services.authorize_preview(bobs.public_id, 8000, cookie).status == 302
    # A validly signed cookie naming someone else than the owner (ownership moved, say): 404.
    forged = signing.dumps({"s": web.public_id, "p": 8000, "u": bob.pk}, salt=services._SIGNING_SALT)
    decision = services.authorize_preview(web.public_id, 8000, forged)
    assert (decision.allowed, decision.status, decision.reason) == (False, 404, "not_owner")
    assert services.Audit.REFUSED in actions(web)


def test_a_stranger_gets_404_for_a_session_that_does_not_exist(web):
    for public_id in ("nosuchsessionxx", "BAD", "", "a" * 40):
        decision = services.authorize_preview(public_id, 8000, None)
        assert (decision.allowed, decision.status) == (False, 404)
    web.status = Session.Status.DELETING
    web.save()
    assert services.authorize_preview(web.public_id, 8000, None).status == 404


def test_the_egress_port_is_never_previewed(alice, web):
    decision = services.authorize_preview(web.public_id, 3128, None)
    assert (decision.allowed, decision.status, decision.reason) == (False, 403, "port_reserved")


def test_a_public_port_is_open_to_anyone_and_private_again_on_request(alice, web):
    services.preview_port_set_public(session=web, port=8000, public=True, actor=alice)
    decision = services.authorize_preview(web.public_id, 8000, None)
    assert (decision.allowed, decision.reason) == (True, "public")
    assert services.authorize_preview(web.public_id, 8001, None).status == 302  # only that port
    services.preview_port_set_public(session=web, port=8000, public=False, actor=alice)
    assert services.authorize_preview(web.public_id, 8000, None).status == 302
    assert actions(web)[:2] == [services.Audit.PRIVATE, services.Audit.PUBLIC]


def test_staff_turning_public_previews_off_makes_every_port_private(alice, web, settings):
    services.preview_port_set_public(session=web, port=8000, public=True, actor=alice)
    settings.VIBECODE_PREVIEW_PUBLIC = False
    assert services.authorize_preview(web.public_id, 8000, None).status == 302
    with pytest.raises(services.PublicPreviewsDisabled):
        services.preview_port_set_public(session=web, port=8001, public=True, actor=alice)
    # Making a port private still works.
    services.preview_port_set_public(session=web, port=8000, public=False, actor=alice)


# --- the app's page that starts the hand-off ------------------------------------------------------


def test_the_preview_page_hands_the_owner_off_to_the_ports_origin(client, alice, web):
    client.login(username="alice", password=PASSWORD)
    response = client.get(f"/sessions/{web.public_id}/preview/8000/?next=/docs/")
    assert response.status_code == 302
    url = urlsplit(response["Location"])
    assert f"{url.scheme}://{url.netloc}" == f"http://8000-{web.public_id}.localhost:8000"
    assert url.path == services.HANDOFF_PATH
    query = parse_qs(url.query)
    assert query["next"] == ["/docs/"]
    assert services.redeem_handoff(web.public_id, 8000, query["token"][0])
    assert "no-cache" in response["Cache-Control"] or "no-store" in response["Cache-Control"]


def test_the_preview_page_refuses_strangers_bad_ports_and_anonymous_visitors(client, alice, bob, web):
    response = client.get(f"/sessions/{web.public_id}/preview/8000/")
    assert response.status_code == 302 and response["Location"].startswith("/login")
    client.login(username="bob", password=PASSWORD)
    assert client.get(f"/sessions/{web.public_id}/preview/8000/").status_code == 404
    client.login(username="alice", password=PASSWORD)
    for port in ("0", "65536", "abc", "3128", "-1", "８０"):
        assert client.get(f"/sessions/{web.public_id}/preview/{port}/").status_code == 404, port
    assert client.get("/sessions/nosuchsession/preview/8000/").status_code == 404
    assert not SessionEvent.objects.filter(action=services.Audit.HANDOFF).exists()


def test_the_preview_page_of_a_suspended_workspace_says_so(client, alice):
    stopped = make_session(alice, status=Session.Status.SUSPENDED)
    client.login(username="alice", password=PASSWORD)
    response = client.get(f"/sessions/{stopped.public_id}/preview/8000/", follow=True)
    assert response.redirect_chain[-1][0] == "/"
    assert "Resume it to open its previews" in response.content.decode()


# --- admin ----------------------------------------------------------------------------------------


def test_staff_make_a_port_private_from_the_admin(client, alice, staff, web):
    services.preview_port_set_public(session=web, port=8000, public=True, actor=alice)
    staff.is_superuser = True
    staff.save()
    client.login(username="staff", password=PASSWORD)
    row = PreviewPort.objects.get(session=web, port=8000)
    form = {"action": "make_private", "_selected_action": [row.pk]}
    response = client.post("/admin/preview_app/previewport/", form, follow=True)
    assert response.status_code == 200
    assert not PreviewPort.objects.get(pk=row.pk).public
    event = SessionEvent.objects.filter(action=services.Audit.PRIVATE).first()
    assert event is not None and event.actor == staff


# --- check vibecode.E015 --------------------------------------------------------------------------


def test_cookie_domains_that_cover_the_preview_domain_are_spotted():
    assert cookie_domain_covers(".localhost", "localhost")
    assert cookie_domain_covers("example.com", "preview.example.com")
    assert cookie_domain_covers(".Example.COM.", "preview.example.com")
    assert cookie_domain_covers("preview.example.com", "preview.example.com")
    assert cookie_domain_covers("a.preview.example.com", "preview.example.com")
    assert not cookie_domain_covers(None, "localhost")
    assert not cookie_domain_covers("", "localhost")
    assert not cookie_domain_covers("vibecode.example.com", "preview.example.com")
    assert not cookie_domain_covers("ample.com", "preview.example.com")


def test_check_e015_refuses_start_up_when_the_apps_cookies_would_reach_previews(settings):
    settings.VIBECODE_PREVIEW_DOMAIN = "preview.example.com"
    settings.SESSION_COOKIE_DOMAIN = None
    settings.CSRF_COOKIE_DOMAIN = None
    assert check_preview_cookie_domains(None) == []
    settings.SESSION_COOKIE_DOMAIN = ".example.com"
    settings.CSRF_COOKIE_DOMAIN = "vibecode.example.com"
    errors = check_preview_cookie_domains(None)
    assert [(e.id, "SESSION_COOKIE_DOMAIN" in e.msg) for e in errors] == [("vibecode.E015", True)]
    settings.CSRF_COOKIE_DOMAIN = "example.com"
    assert len(check_preview_cookie_domains(None)) == 2
    with pytest.raises(SystemCheckError, match=r"vibecode\.E015"):
        call_command("check")
