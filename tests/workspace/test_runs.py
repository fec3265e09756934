"""Streaming runs through the API, on the real Docker engine: output streamed in order as it is
produced, stdin, Stop and timeouts that kill the whole process tree, reattach from an offset, a
flood bounded by the helper's ring buffer, the exec rate limit counting starts only, and the
refusals. Programs block on stdin where a test needs a run still going, so nothing depends on
timing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from rest_framework.test import APIClient

from tests.accounts.test_auth_api import assert_error
from tests.workspace.test_exec import _leftovers, _write
from tests.workspace.test_hostile_tenant import kill_helpers

pytestmark = [pytest.mark.django_db, pytest.mark.docker]

WAIT = 60.0


def _start(api: APIClient, base: str, **body) -> dict:
    response = api.post(f"{base}/runs", body, format="json")
    assert response.status_code == 201, response.content
    info = response.json()
    assert len(info["run_id"]) == 16 and info["running"] in (True, False)
    return info


def _events(api: APIClient, base: str, run_id: str, **params) -> Iterator[tuple[str, dict, str | None]]:
    """The run's server-sent events as (name, data, id), until the stream ends or the caller stops."""
    headers = {}
    if "last_event_id" in params:
        headers["HTTP_LAST_EVENT_ID"] = str(params.pop("last_event_id"))
    response = api.get(f"{base}/runs/{run_id}/events", params, **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/event-stream")
    buffer = b""
    try:
        for chunk in response.streaming_content:
            buffer += chunk
            while b"\n\n" in buffer:
                raw, buffer = buffer.split(b"\n\n", 1)
                fields: dict[str, str] = {}
                for line in raw.decode().split("\n"):
                    if line and not line.startswith(":"):
                        key, _, value = line.partition(": ")
                        fields[key] = value
                if "event" in fields:
                    yield fields["event"], json.loads(fields["data"]), fields.get("id")
    finally:
        # The test client's own wrapper: it closes the response as a WSGI server would, without
        # closing the test's database connection (response.close() alone would).
        response._iterator.close()


def _until_end(api: APIClient, base: str, run_id: str, **params) -> tuple[str, dict]:
    text = []
    for name, data, _ in _events(api, base, run_id, **params):
        if name == "output":
            text.append(data["text"])
        elif name in ("end", "lost"):
            assert name == "end", data
            return "".join(text), data
    raise AssertionError("the stream ended without an end event")


def _until_text(api: APIClient, base: str, run_id: str, needle: str) -> str:
    seen = ""
    for name, data, _ in _events(api, base, run_id):
        assert name not in ("end", "lost"), (name, data, seen)
        if name == "output":
            seen += data["text"]
            if needle in seen:
                return seen
    raise AssertionError(f"{needle!r} never came; saw {seen!r}")


def _info(api: APIClient, base: str, run_id: str) -> dict:
    response = api.get(f"{base}/runs/{run_id}")
    assert response.status_code == 200, response.content
    return response.json()


def _input(api: APIClient, base: str, run_id: str, text: str, **extra) -> dict:
    response = api.post(f"{base}/runs/{run_id}/input", {"text": text, **extra}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture(autouse=True)
def _roomy_limits(settings):
    settings.VIBECODE_RATE_API = settings.VIBECODE_RATE_EXEC = "100000/m"


ASK = (
    "import sys\n"
    "for i in range(1, 4):\n"
    "    print(f'line {i}')\n"
    "print('err line', file=sys.stderr)\n"
    "name = input('name? ')\n"
    "print(f'hello {name}')\n"
    "print('done')\n"
)


def test_output_streams_in_order_while_the_run_waits_for_stdin_which_reaches_input(alice_api, base):
    _write(alice_api, base, "ask.py", ASK)
    run = _start(alice_api, base, path="ask.py")
    # The program blocks in input(): its first lines can only have come while it was running.
    seen = _until_text(alice_api, base, run["run_id"], "name? ")
    assert seen.index("line 1") < seen.index("line 2") < seen.index("line 3") < seen.index("err line")
    assert _info(alice_api, base, run["run_id"])["running"] is True
    assert _input(alice_api, base, run["run_id"], "Ada\n")["accepted"] == 4
    text, end = _until_end(alice_api, base, run["run_id"])
    assert text.endswith("name? hello Ada\ndone\n"), text
    assert end["exit_code"] == 0 and not end["timed_out"] and not end["stopped"]
    assert end["duration_ms"] >= 0 and end["max_rss_kb"] and end["max_rss_kb"] > 1000
    listed = alice_api.get(f"{base}/runs").json()["runs"]
    assert [r["run_id"] for r in listed] == [run["run_id"]] and listed[0]["running"] is False
    assert listed[0]["label"] == "ask.py"


def test_stdin_eof_ends_a_program_reading_to_the_end(alice_api, base):
    run = _start(alice_api, base, argv=["python3", "-c", "import sys; print(len(sys.stdin.read()))"])
    _input(alice_api, base, run["run_id"], "abc", eof=True)
    text, end = _until_end(alice_api, base, run["run_id"])
    assert text == "3\n" and end["exit_code"] == 0


def test_exit_codes_and_a_missing_program(alice_api, base):
    run = _start(alice_api, base, argv=["bash", "-c", "echo out; exit 7"])
    text, end = _until_end(alice_api, base, run["run_id"])
    assert text == "out\n" and end["exit_code"] == 7
    missing = _start(alice_api, base, argv=["no-such-program-here"])
    text, end = _until_end(alice_api, base, missing["run_id"])
    assert end["exit_code"] == 127 and "no-such-program-here" in text


def test_a_c_file_is_compiled_then_run_line_by_line(alice_api, base):
    _write(
        alice_api,
        base,
        "hello.c",
        '#include <stdio.h>\nint main(void){char b[64];printf("ready\\n");'
        'if(fgets(b,sizeof b,stdin))printf("got %s",b);return 3;}\n',
    )
    run = _start(alice_api, base, path="hello.c")
    _until_text(alice_api, base, run["run_id"], "ready\n")  # line-buffered although it is a pipe
    _input(alice_api, base, run["run_id"], "x\n")
    text, end = _until_end(alice_api, base, run["run_id"])
    assert text == "ready\ngot x\n" and end["exit_code"] == 3
    listing = alice_api.post(f"{base}/exec", {"argv": ["bash", "-c", "ls /tmp"]}, format="json").json()
    assert "vibecode-run" not in listing["stdout"]


def test_stop_kills_the_whole_process_tree(alice_api, base, session):
    script = "sleep 301 & setsid sleep 302 & (sleep 303 &) ; echo started; wait"
    run = _start(alice_api, base, argv=["bash", "-c", script])
    _until_text(alice_api, base, run["run_id"], "started")
    response = alice_api.post(f"{base}/runs/{run['run_id']}/stop")
    assert response.status_code == 200, response.content
    stopped = response.json()
    assert stopped["running"] is False and stopped["stopped"] is True and stopped["exit_code"] is None
    _, end = _until_end(alice_api, base, run["run_id"])
    assert end["stopped"] is True
    assert _leftovers(session, grace=10) == []
    # Stopping again is harmless; input to an ended run is refused.
    assert alice_api.post(f"{base}/runs/{run['run_id']}/stop").status_code == 200
    refused = alice_api.post(f"{base}/runs/{run['run_id']}/input", {"text": "x"}, format="json")
    assert_error(refused, 409, "run_finished")


def test_a_run_past_its_timeout_is_killed(alice_api, base, session, settings):
    settings.VIBECODE_RUN_TIMEOUT_SECONDS = 2
    run = _start(alice_api, base, argv=["bash", "-c", "sleep 300 & echo begun; sleep 300"])
    text, end = _until_end(alice_api, base, run["run_id"])
    assert text == "begun\n"
    assert end["timed_out"] is True and end["exit_code"] is None
    assert _leftovers(session, grace=10) == []


def test_reattach_reads_on_from_an_offset_or_the_last_event_id(alice_api, base):
    program = "print('alpha'); print('beta'); input(); print('gamma')"
    run = _start(alice_api, base, argv=["python3", "-c", program])
    _until_text(alice_api, base, run["run_id"], "beta\n")
    # A reload: the list shows the run still going, and reading from 6 skips "alpha\n".
    going = [r for r in alice_api.get(f"{base}/runs").json()["runs"] if r["running"]]
    assert [r["run_id"] for r in going] == [run["run_id"]] and going[0]["end_offset"] == 11
    for name, data, event_id in _events(alice_api, base, run["run_id"], offset=6):
        assert (name, data, event_id) == ("output", {"text": "beta\n"}, "11")
        break
    _input(alice_api, base, run["run_id"], "\n")
    text, end = _until_end(alice_api, base, run["run_id"], last_event_id=11)
    assert text == "gamma\n" and end["exit_code"] == 0


def test_invalid_utf8_is_shown_replaced_and_a_split_character_whole(alice_api, base):
    program = (
        "import sys, time\n"
        "out = sys.stdout.buffer\n"
        "out.write(b'bad \\xff\\xfe end\\n'); out.flush()\n"
        "out.write('caf\\u00e9'.encode()[:-1]); out.flush(); time.sleep(0.3)\n"
        "out.write('caf\\u00e9'.encode()[-1:] + b'\\n'); out.flush()\n"
    )
    run = _start(alice_api, base, argv=["python3", "-c", program])
    text, end = _until_end(alice_api, base, run["run_id"])
    assert text == "bad \ufffd\ufffd end\ncafé\n" and end["exit_code"] == 0


def test_a_flood_is_bounded_by_the_ring_and_reported_as_dropped(alice_api, base):
    run = _start(alice_api, base, argv=["yes", "flooding the output"])
    deadline = time.monotonic() + WAIT
    while True:
        info = _info(alice_api, base, run["run_id"])
        if info["end_offset"] > 4 * 1024 * 1024:
            break
        assert time.monotonic() < deadline, info
        time.sleep(0.2)
    assert info["first_offset"] > 0
    assert info["end_offset"] - info["first_offset"] <= 1024 * 1024
    for name, data, _ in _events(alice_api, base, run["run_id"], offset=0):
        assert name == "dropped" and data["bytes"] > 0
        break
    # The rest of the session is unaffected while the flood goes on.
    _write(alice_api, base, "still.txt", "fine")
    assert alice_api.get(f"{base}/files/content", {"path": "still.txt"}).json()["content"] == "fine"
    assert alice_api.post(f"{base}/runs/{run['run_id']}/stop").json()["stopped"] is True


def test_the_rate_limit_counts_runs_started_not_output_read(alice_api, base, settings):
    settings.VIBECODE_RATE_EXEC = "3/m"
    runs = [
        _start(alice_api, base, argv=["bash", "-c", f"for i in 1 2 3; do echo {n}-$i; done"])
        for n in range(3)
    ]
    for _ in range(3):  # many reads of every run's output
        for run in runs:
            text, _end = _until_end(alice_api, base, run["run_id"])
            assert text.count("\n") == 3
        assert alice_api.get(f"{base}/runs").status_code == 200
    assert_error(alice_api.post(f"{base}/runs", {"argv": ["true"]}, format="json"), 429)


def test_a_killed_helper_loses_its_runs_only(alice_api, base, session):
    run = _start(alice_api, base, argv=["python3", "-c", "print('up'); input()"])
    _until_text(alice_api, base, run["run_id"], "up")
    kill_helpers(session)
    response = alice_api.get(f"{base}/runs/{run['run_id']}/events")
    assert_error(response, 404, "run_not_found")
    assert _leftovers(session, grace=15) == []
    again = _start(alice_api, base, argv=["echo", "back"])
    text, end = _until_end(alice_api, base, again["run_id"])
    assert text == "back\n" and end["exit_code"] == 0


def test_bad_requests_get_json_errors(alice_api, bob_api, base):
    assert_error(alice_api.post(f"{base}/runs", {}, format="json"), 400)
    assert_error(alice_api.post(f"{base}/runs", {"path": "a.py", "argv": ["x"]}, format="json"), 400)
    assert_error(alice_api.post(f"{base}/runs", {"argv": []}, format="json"), 400)
    assert_error(
        alice_api.post(f"{base}/runs", {"path": "notes.txt"}, format="json"), 400, "unsupported_file_type"
    )
    assert_error(
        alice_api.post(f"{base}/runs", {"path": "../x.py"}, format="json"), 400, "path_outside_workspace"
    )
    assert_error(alice_api.post(f"{base}/runs", "not json", content_type="application/json"), 400)
    for suffix in ("", "/events", "/stop"):
        method = alice_api.post if suffix == "/stop" else alice_api.get
        assert_error(method(f"{base}/runs/0123456789abcdef{suffix}"), 404, "run_not_found")
        assert_error(method(f"{base}/runs/nonsense{suffix}"), 404, "run_not_found")
    assert_error(
        alice_api.post(f"{base}/runs/nonsense/input", {"text": "x"}, format="json"), 404, "run_not_found"
    )
    run = _start(alice_api, base, argv=["python3", "-c", "input()"])
    assert_error(alice_api.get(f"{base}/runs/{run['run_id']}/events", {"offset": "-1"}), 400)
    assert_error(alice_api.get(f"{base}/runs/{run['run_id']}/events", {"offset": "x"}), 400)
    assert_error(alice_api.post(f"{base}/runs/{run['run_id']}/input", {"eof": True}, format="json"), 400)
    sse = alice_api.get(f"{base}/runs/0123456789abcdef/events", HTTP_ACCEPT="text/event-stream")
    assert sse.status_code == 404 and json.loads(sse.content)["code"] == "run_not_found"
    # Another user's session is not found, whatever the run.
    assert_error(bob_api.get(f"{base}/runs"), 404)
    assert_error(bob_api.post(f"{base}/runs/{run['run_id']}/stop"), 404)
    assert_error(bob_api.get(f"{base}/runs/{run['run_id']}/events"), 404)
    assert alice_api.post(f"{base}/runs/{run['run_id']}/stop").status_code == 200
