"""The helper program as the runtime sends it: packed, small enough for one argument, and the
same program as ``sandbox/agent.py``."""

from __future__ import annotations

import subprocess

from sandbox import AGENT_PROGRAM, AGENT_SOURCE, MAX_ARG_BYTES
from sessions_app.runtime.helper import HELPER_ARGV


def test_the_runtime_sends_the_packed_program():
    assert HELPER_ARGV[-2:] == [AGENT_PROGRAM, "serve"]


def test_the_packed_program_fits_one_argument_with_room_to_grow():
    # Half the kernel's cap: the helper may double before this needs another look.
    assert len(AGENT_PROGRAM.encode()) < MAX_ARG_BYTES // 2
    assert len(AGENT_PROGRAM) < len(AGENT_SOURCE) / 2


def test_the_packed_program_starts_the_helper():
    # Debian's python3, as in the sandbox image (the helper needs ctypes). With stdin at its end the
    # helper says hello and exits cleanly.
    done = subprocess.run(
        ["/usr/bin/python3", "-I", "-u", "-c", AGENT_PROGRAM, "serve"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert '"hello": true' in done.stdout


def test_no_word_of_the_source_is_on_the_command_line():
    # A user's ``pkill -f <word>`` matches command lines; the helper's must not carry its source.
    for word in ("VibeCode", "pylsp", "def ", "import json"):
        assert word not in AGENT_PROGRAM
