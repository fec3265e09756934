"""Code execution through the API, on the real Docker engine: exec and run, the limits that keep a
hostile or careless program contained, and the refusals (shell operators, paths, owners, rates)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import docker
import pytest
from django.db import connection
from django.test import override_settings
from rest_framework.test import APIClient

from tests.accounts.test_auth_api import assert_error
from tests.conftest import bearer

pytestmark = [pytest.mark.django_db, pytest.mark.docker]

ENGINE = docker.from_env()
MIB = 1024 * 1024
FORK_BOMB = ["bash", "-c", "b(){ b|b& };b; sleep 60"]


def _exec(api: APIClient, base: str, **body) -> dict:
    response = api.post(f"{base}/exec", body, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def _run(api: APIClient, base: str, **body) -> dict:
    response = api.post(f"{base}/run", body, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def _write(api: APIClient, base: str, path: str, content: str) -> None:
    response = api.put(f"{base}/files/content", {"path": path, "content": content}, format="json")
    assert response.status_code == 200, response.content


def _processes(session) -> list[str]:
    """The command lines of every process in the session's container, as ``docker top`` sees them,
    but the session's TCP tunnel (it lives as long as the session, like its helper)."""
    top = ENGINE.api.top(session.container_name)
    column = top["Titles"].index("CMD")
    return [process[column] for process in top["Processes"] if not process[column].endswith(" tunnel 3128")]


def _leftovers(session, *, grace: float = 1.0) -> list[str]:
    """What is running besides the container's init, its ``sleep infinity`` and the helper.
    Orphans are reaped by the container's init, so give it a moment before reporting."""
    deadline = time.monotonic() + grace
    while True:
        extra = [
            cmd
            for cmd in _processes(session)
            if not cmd.startswith("/sbin/docker-init")
            and cmd != "sleep infinity"
            and not cmd.startswith("/usr/bin/python3 -I -u -c")  # the helper, its source inline
        ]
        if not extra or time.monotonic() > deadline:
            return extra
        time.sleep(0.1)


def _exec_on_a_thread(user, base: str, **body) -> tuple[threading.Thread, dict]:
    """Start an exec on a thread of its own, with its own client; the response lands in the dict.
    The thread's database connection is its own, so the test must use ``transaction=True``."""
    outcome: dict = {}

    def run() -> None:
        try:
            client = APIClient()
            client.credentials(**bearer(user))
            outcome["response"] = client.post(f"{base}/exec", body, format="json")
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


# --- exec -------------------------------------------------------------------------------------


def test_exec_runs_argv_and_reports_every_field(alice_api, base):
    result = _exec(
        alice_api, base, argv=["python3", "-c", "import sys; print('out'); print('err', file=sys.stderr)"]
    )
    assert set(result) == {
        "exit_code",
        "stdout",
        "stderr",
        "duration_ms",
        "timed_out",
        "truncated",
        "oom_killed",
        "max_rss_kb",
    }
    assert (result["exit_code"], result["stdout"], result["stderr"]) == (0, "out\n", "err\n")
    assert result["timed_out"] is result["truncated"] is result["oom_killed"] is False
    assert result["duration_ms"] >= 0
    assert result["max_rss_kb"] > 1000  # a python3 takes a few MB


def test_a_command_string_is_split_without_a_shell(alice_api, base):
    result = _exec(alice_api, base, command="printf '[%s]\\n' 'a b' \"$HOME\" '*' ~")
    # Quotes group words; nothing is expanded, because no shell ever sees the line.
    assert result["stdout"] == "[a b]\n[$HOME]\n[*]\n[~]\n"


def test_a_timeout_kills_the_command_and_answers_promptly(alice_api, base, session):
    started = time.monotonic()
    result = _exec(alice_api, base, argv=["sleep", "30"], timeout=1)
    elapsed = time.monotonic() - started
    assert result["timed_out"] is True
    assert result["exit_code"] is None
    assert result["oom_killed"] is False
    assert elapsed < 3, elapsed
    assert _leftovers(session) == []


def test_a_timeout_kills_background_children_too(alice_api, base, session):
    started = time.monotonic()
    result = _exec(alice_api, base, argv=["bash", "-c", "sleep 100 & sleep 100 & wait"], timeout=1)
    assert result["timed_out"] is True and result["exit_code"] is None
    assert time.monotonic() - started < 3
    assert _leftovers(session) == []


def test_a_background_child_left_by_a_finished_command_is_not_waited_for_and_is_killed(
    alice_api, base, session
):
    started = time.monotonic()
    result = _exec(alice_api, base, argv=["sh", "-c", "sleep 100 & echo started"], timeout=30)
    assert (result["exit_code"], result["stdout"], result["timed_out"]) == (0, "started\n", False)
    assert time.monotonic() - started < 3
    assert _leftovers(session) == []


def test_an_output_flood_is_cut_at_one_mebibyte_and_the_backend_memory_stays_bounded(alice_api, base):
    _exec(alice_api, base, argv=["true"])  # the helper is started and warm before measuring
    before = _rss_bytes()
    result = _exec(alice_api, base, argv=["yes"], timeout=10)
    growth = _rss_bytes() - before
    assert result["truncated"] is True
    assert result["timed_out"] is True
    assert len(result["stdout"]) == MIB
    assert result["stdout"].startswith("y\ny\n")
    assert result["stderr"] == ""
    assert growth < 100 * MIB, f"the backend grew by {growth / MIB:.0f} MiB"


def test_a_flood_on_stderr_is_cut_at_the_limit_too(alice_api, base):
    result = _exec(alice_api, base, argv=["sh", "-c", "yes >&2"], timeout=2)
    assert result["truncated"] is True
    assert len(result["stderr"]) == MIB
    assert result["stdout"] == ""


def test_output_under_the_limit_is_kept_whole_and_not_marked_truncated(alice_api, base):
    result = _exec(alice_api, base, argv=["head", "-c", str(MIB), "/dev/zero"])
    assert result["exit_code"] == 0
    assert result["truncated"] is False
    assert result["stdout"] == "\0" * MIB


@pytest.mark.django_db(transaction=True)  # the bomb runs on a thread, with its own connection
def test_a_fork_bomb_is_contained_and_the_backend_keeps_answering(alice, alice_api, base, session):
    started = time.monotonic()
    thread, outcome = _exec_on_a_thread(alice, base, argv=FORK_BOMB, timeout=8)
    # A real bomb, not one that fizzled: it nears the pid limit (polled: a loaded machine is slow).
    deadline = time.monotonic() + 6
    while True:
        pids = ENGINE.api.stats(session.container_name, stream=False, one_shot=True)["pids_stats"]
        if pids["current"] >= 400 or time.monotonic() > deadline:
            break
    assert pids["current"] >= 400, pids
    answered = time.monotonic()
    assert alice_api.get("/api/me").status_code == 200
    assert time.monotonic() - answered < 3
    thread.join(60)
    assert not thread.is_alive(), "the exec of the fork bomb never returned"
    assert time.monotonic() - started < 20
    response = outcome["response"]
    assert response.status_code == 200, response.content
    result = response.json()
    assert result["timed_out"] is True and result["exit_code"] is None, result
    # The whole tree is gone: the container is back to its idle processes.
    assert _leftovers(session) == []
    assert not any("bash" in cmd for cmd in _processes(session))
    assert len(_processes(session)) <= 3, _processes(session)
    # And the session itself still works.
    assert _exec(alice_api, base, argv=["echo", "alive"])["stdout"] == "alive\n"


@pytest.mark.django_db(transaction=True)  # the bomb runs on a thread, with its own connection
def test_a_fork_bomb_is_contained_even_when_the_session_is_used_meanwhile(alice, alice_api, base, session):
    thread, outcome = _exec_on_a_thread(alice, base, argv=FORK_BOMB, timeout=5)
    time.sleep(2)
    # The editor keeps listing files meanwhile. At the pid limit such a request may be refused,
    # but it must not take the helper, and with it the bomb's supervisor, down.
    for _ in range(3):
        assert alice_api.get(f"{base}/files", {"path": ""}).status_code != 500
        time.sleep(0.5)
    thread.join(60)
    assert not thread.is_alive(), "the exec of the fork bomb never returned"
    response = outcome["response"]
    assert response.status_code == 200, response.content
    assert response.json()["timed_out"] is True
    assert _leftovers(session) == []
    assert _exec(alice_api, base, argv=["echo", "alive"])["stdout"] == "alive\n"


def test_a_memory_bomb_is_oom_killed_and_reported(alice_api, base):
    result = _exec(alice_api, base, command='python3 -c "b=bytearray(3*2**30)"')
    assert result["oom_killed"] is True
    assert result["exit_code"] == 137
    assert result["timed_out"] is False
    assert result["max_rss_kb"] > 1_000_000
    assert _exec(alice_api, base, argv=["echo", "alive"])["stdout"] == "alive\n"


@pytest.mark.parametrize(
    "command",
    [
        "ls; id",
        "a && b",
        "a || b",
        "ls | wc",
        "echo `id`",
        "echo $(id)",
        "echo hi > f",
        "cat < f",
        "sleep 1 &",
        "ls\nid",
        "touch f\rid",
    ],
)
def test_shell_operators_in_a_command_are_refused(alice_api, base, command):
    body = assert_error(
        alice_api.post(f"{base}/exec", {"command": command}, format="json"), 400, "shell_operators_refused"
    )
    assert "terminal" in body["detail"]


def test_a_refused_command_runs_nothing(alice_api, base):
    for command in [
        "echo hi > f",
        "touch f; touch g",
        "touch f && touch g",
        "touch f | touch g",
        "touch f &",
        "echo $(touch f)",
        "touch f\ntouch g",
    ]:
        assert_error(
            alice_api.post(f"{base}/exec", {"command": command}, format="json"),
            400,
            "shell_operators_refused",
        )
    listing = alice_api.get(f"{base}/files", {"path": ""})
    assert listing.status_code == 200, listing.content
    names = {entry["name"] for entry in listing.json()["entries"]}
    assert not names & {"f", "g"}, names


def test_argv_and_command_together_or_neither_are_refused(alice_api, base):
    assert_error(alice_api.post(f"{base}/exec", {"argv": ["true"], "command": "true"}, format="json"), 400)
    assert_error(alice_api.post(f"{base}/exec", {}, format="json"), 400)
    assert_error(alice_api.post(f"{base}/exec", {"command": "   "}, format="json"), 400, "invalid_command")
    unclosed = alice_api.post(f"{base}/exec", {"command": "echo 'unclosed"}, format="json")
    assert_error(unclosed, 400, "invalid_command")


def test_a_timeout_outside_the_allowed_range_is_refused(alice_api, base):
    for timeout in [0, -1, 301]:
        assert_error(
            alice_api.post(f"{base}/exec", {"argv": ["true"], "timeout": timeout}, format="json"),
            400,
            "invalid_timeout",
        )


def test_a_missing_command_exits_127_with_a_message(alice_api, base):
    result = _exec(alice_api, base, argv=["no-such-command", "x"])
    assert result["exit_code"] == 127
    assert "no-such-command" in result["stderr"]
    assert result["timed_out"] is False


def test_a_file_that_is_not_executable_exits_126(alice_api, base):
    _write(alice_api, base, "notes.txt", "hello\n")
    result = _exec(alice_api, base, argv=["./notes.txt"])
    assert result["exit_code"] == 126
    assert "notes.txt" in result["stderr"]


def test_the_exit_code_of_a_failing_command_is_reported(alice_api, base):
    assert _exec(alice_api, base, argv=["sh", "-c", "exit 42"])["exit_code"] == 42
    # Killed by a signal: 128 + the signal, as a shell would say.
    assert _exec(alice_api, base, argv=["sh", "-c", "kill -TERM $$"])["exit_code"] == 143


def test_stdin_is_passed_to_the_command(alice_api, base):
    assert _exec(alice_api, base, argv=["cat"], stdin="hello\nworld\n")["stdout"] == "hello\nworld\n"
    # More than a pipe buffer holds, while the command writes as it reads.
    big = "x" * 500_000
    result = _exec(alice_api, base, argv=["cat"], stdin=big)
    assert (result["exit_code"], len(result["stdout"])) == (0, 500_000)
    assert _exec(alice_api, base, argv=["wc", "-c"], stdin=big)["stdout"].strip() == "500000"


def test_stdin_the_command_does_not_read_is_dropped(alice_api, base):
    result = _exec(alice_api, base, argv=["true"], stdin="x" * 1_000_000)
    assert (result["exit_code"], result["timed_out"]) == (0, False)
    result = _exec(alice_api, base, argv=["sleep", "1"], stdin="x" * 1_000_000, timeout=5)
    assert (result["exit_code"], result["timed_out"]) == (0, False)


def test_without_stdin_a_reading_command_sees_end_of_file(alice_api, base):
    result = _exec(alice_api, base, argv=["cat"], timeout=5)
    assert (result["exit_code"], result["stdout"], result["timed_out"]) == (0, "", False)


def test_cwd_is_a_folder_of_the_workspace(alice_api, base):
    _write(alice_api, base, "sub/deeper/x.txt", "x")
    assert _exec(alice_api, base, argv=["pwd"])["stdout"] == "/workspace\n"
    assert _exec(alice_api, base, argv=["pwd"], cwd="sub")["stdout"] == "/workspace/sub\n"
    assert _exec(alice_api, base, command="cat x.txt", cwd="sub/deeper")["stdout"] == "x"


def test_a_cwd_outside_the_workspace_is_refused(alice_api, base):
    for cwd in ["../", "..", "sub/../..", "/etc", "%2e%2e/"]:
        assert_error(
            alice_api.post(f"{base}/exec", {"argv": ["pwd"], "cwd": cwd}, format="json"),
            400,
            "path_outside_workspace",
        )


def test_a_cwd_that_is_a_file_or_missing_is_refused(alice_api, base):
    _write(alice_api, base, "file.txt", "x")
    assert_error(
        alice_api.post(f"{base}/exec", {"argv": ["pwd"], "cwd": "file.txt"}, format="json"),
        400,
        "not_a_directory",
    )
    assert_error(
        alice_api.post(f"{base}/exec", {"argv": ["pwd"], "cwd": "missing"}, format="json"), 404, "not_found"
    )


def test_a_cwd_through_a_symlink_is_refused(alice_api, base):
    _exec(alice_api, base, argv=["ln", "-s", "/etc", "link"])
    response = alice_api.post(f"{base}/exec", {"argv": ["pwd"], "cwd": "link"}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["code"] in {"not_a_directory", "symlink_refused"}, response.json()


# --- run --------------------------------------------------------------------------------------


def test_a_python_file_runs_with_its_args_stdin_and_exit_code(alice_api, base):
    _write(alice_api, base, "main.py", "import sys\nprint(sys.argv[1:], sys.stdin.read().upper())\n")
    result = _run(alice_api, base, path="main.py", args=["one", "two words"], stdin="hi")
    assert (result["exit_code"], result["stdout"], result["stderr"]) == (0, "['one', 'two words'] HI\n", "")
    _write(alice_api, base, "fail.py", "import sys; sys.exit(3)\n")
    assert _run(alice_api, base, path="fail.py")["exit_code"] == 3
    _write(alice_api, base, "boom.py", "raise ValueError('boom')\n")
    boom = _run(alice_api, base, path="boom.py")
    assert boom["exit_code"] == 1
    assert "ValueError: boom" in boom["stderr"]


def test_a_file_runs_from_the_workspace_root_whatever_its_folder(alice_api, base):
    _write(alice_api, base, "src/app.py", "import os; print(os.getcwd())\n")
    assert _run(alice_api, base, path="src/app.py")["stdout"] == "/workspace\n"


def test_a_javascript_file_runs_with_node(alice_api, base):
    _write(alice_api, base, "app.js", "console.log('js', process.argv.slice(2).join(','))\nprocess.exit(2)\n")
    result = _run(alice_api, base, path="app.js", args=["a", "b"])
    assert (result["exit_code"], result["stdout"]) == (2, "js a,b\n")


def test_a_shell_script_runs_with_bash(alice_api, base):
    _write(alice_api, base, "job.sh", 'read line\necho "got $line and $1"\necho oops >&2\nexit 4\n')
    result = _run(alice_api, base, path="job.sh", args=["arg"], stdin="input\n")
    assert (result["exit_code"], result["stdout"], result["stderr"]) == (4, "got input and arg\n", "oops\n")


def test_a_c_program_is_compiled_then_run_with_stdin_and_args(alice_api, base, session):
    program = (
        "#include <stdio.h>\n"
        "int main(int argc, char **argv) {\n"
        "    int a, b;\n"
        '    if (scanf("%d %d", &a, &b) != 2) return 1;\n'
        '    printf("%s %d\\n", argc > 1 ? argv[1] : "-", a + b);\n'
        "    return 5;\n"
        "}\n"
    )
    _write(alice_api, base, "sum.c", program)
    result = _run(alice_api, base, path="sum.c", args=["sum"], stdin="2 40\n")
    assert (result["exit_code"], result["stdout"], result["stderr"]) == (5, "sum 42\n", "")
    # The binary went to the sandbox's /tmp and was removed afterwards; the workspace is untouched.
    leftovers = _exec(alice_api, base, command="find /tmp /workspace -name vibecode-run-* -o -name a.out")
    assert leftovers["stdout"] == ""


def test_a_c_compile_error_is_reported_with_gcc_s_message(alice_api, base):
    _write(alice_api, base, "broken.c", "int main(void) { return missing; }\n")
    result = _run(alice_api, base, path="broken.c")
    assert result["exit_code"] not in (0, None)
    assert "broken.c" in result["stderr"] and "error" in result["stderr"]
    assert "missing" in result["stderr"]
    assert result["stdout"] == ""


def test_an_unknown_file_type_is_refused_with_the_supported_ones(alice_api, base):
    _write(alice_api, base, "script.rb", "puts 1\n")
    body = assert_error(
        alice_api.post(f"{base}/run", {"path": "script.rb"}, format="json"), 400, "unsupported_file_type"
    )
    for suffix in (".py", ".js", ".sh", ".c"):
        assert suffix in body["detail"], body
    assert_error(
        alice_api.post(f"{base}/run", {"path": "Makefile"}, format="json"), 400, "unsupported_file_type"
    )


def test_run_refuses_a_path_outside_the_workspace_and_reports_a_missing_file(alice_api, base):
    assert_error(
        alice_api.post(f"{base}/run", {"path": "../etc/x.py"}, format="json"), 400, "path_outside_workspace"
    )
    missing = _run(alice_api, base, path="missing.py")
    assert missing["exit_code"] == 2
    assert "missing.py" in missing["stderr"]


def test_a_run_that_times_out_is_killed(alice_api, base, session):
    _write(alice_api, base, "loop.py", "import time\nwhile True:\n    time.sleep(1)\n")
    started = time.monotonic()
    result = _run(alice_api, base, path="loop.py", timeout=1)
    assert result["timed_out"] is True and result["exit_code"] is None
    assert time.monotonic() - started < 3
    assert _leftovers(session) == []


# --- who, when, how often ---------------------------------------------------------------------


def test_another_users_session_answers_404_and_runs_nothing(alice_api, bob_api, base):
    _write(alice_api, base, "main.py", "open('ran-by-run', 'w')\n")
    assert_error(bob_api.post(f"{base}/exec", {"argv": ["touch", "ran-by-exec"]}, format="json"), 404)
    assert_error(bob_api.post(f"{base}/run", {"path": "main.py"}, format="json"), 404)
    names = {entry["name"] for entry in alice_api.get(f"{base}/files", {"path": ""}).json()["entries"]}
    assert "ran-by-exec" not in names and "ran-by-run" not in names


def test_exec_needs_authentication(api, base):
    assert api.post(f"{base}/exec", {"argv": ["true"]}, format="json").status_code == 401


def test_the_eleventh_exec_or_run_in_a_minute_is_throttled(alice_api, base):
    _write(alice_api, base, "ok.py", "print('ok')\n")
    for _ in range(5):
        _exec(alice_api, base, argv=["true"])
        _run(alice_api, base, path="ok.py")
    throttled = alice_api.post(f"{base}/exec", {"argv": ["true"]}, format="json")
    assert_error(throttled, 429, "throttled")
    assert 1 <= int(throttled["Retry-After"]) <= 60
    assert_error(alice_api.post(f"{base}/run", {"path": "ok.py"}, format="json"), 429, "throttled")
    # Other calls are not held up by the exec limit.
    assert alice_api.get(f"{base}/files", {"path": ""}).status_code == 200


def test_exec_and_run_on_a_suspended_session_answer_409(alice_api, base):
    _write(alice_api, base, "main.py", "print(1)\n")
    suspended = alice_api.post(f"{base}/suspend")
    assert suspended.status_code == 200, suspended.content
    assert_error(
        alice_api.post(f"{base}/exec", {"argv": ["true"]}, format="json"), 409, "session_not_running"
    )
    assert_error(
        alice_api.post(f"{base}/run", {"path": "main.py"}, format="json"), 409, "session_not_running"
    )


@pytest.mark.django_db(transaction=True)  # each thread has its own connection, so data must be committed
def test_four_concurrent_execs_on_one_session_all_succeed_side_by_side(alice, base):
    with override_settings(VIBECODE_RATE_EXEC="1000/m"):
        started = time.monotonic()
        running = [
            _exec_on_a_thread(alice, base, argv=["sh", "-c", "sleep 1.5; echo $0", str(number)])
            for number in range(4)
        ]
        for thread, _ in running:
            thread.join(60)
        elapsed = time.monotonic() - started
    for number, (_, outcome) in enumerate(running):
        response = outcome["response"]
        assert response.status_code == 200, response.content
        assert (response.json()["exit_code"], response.json()["stdout"]) == (0, f"{number}\n")
    # Side by side, not one after the other (that would take 6 s).
    assert elapsed < 4.5, elapsed


def test_many_execs_in_a_row_leave_nothing_behind(alice_api, base, session):
    with override_settings(VIBECODE_RATE_EXEC="1000/m"):
        for number in range(30):
            assert _exec(alice_api, base, argv=["echo", str(number)])["stdout"] == f"{number}\n"
    assert _leftovers(session) == []
    assert len(_processes(session)) <= 3, _processes(session)
