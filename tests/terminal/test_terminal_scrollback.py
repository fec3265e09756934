"""The terminal gives xterm.js its screen and scrollback back: the sandbox's PTY host keeps the
last MiB of each terminal's output and replays it to every attach, first, as it was written
(terminal_app/services.py, the ``pty-host`` mode of sandbox/agent.py).

Real things: the attach is opened through the service on a real sandbox, as the consumer does.
Every read waits for a marker with a generous deadline; nothing depends on how the output is cut.
"""

from __future__ import annotations

import re
import time

import pytest

from sessions_app import services
from sessions_app.models import Session
from terminal_app.services import (
    OpenTerminal,
    terminal_detach,
    terminal_input_bytes,
    terminal_open,
)

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

WAIT = 60.0  # seconds: generous for a loaded machine; every wait ends as soon as it is satisfied
COLS, ROWS = 80, 24
RING = 1024 * 1024
LINE = re.compile(rb"line-(\d+)")
ALT_ON = b"\x1b[?1049h"


@pytest.fixture
def running(alice, sandboxes) -> Session:
    return services.session_create(user=alice, name="scrollback")


class Reader:
    """Everything a terminal's attach has sent so far, read on demand until a pattern shows."""

    def __init__(self, terminal: OpenTerminal) -> None:
        self.terminal = terminal
        self.data = b""
        self.events: list[dict] = []
        terminal.stream.sock.settimeout(1.0)

    def until(self, pattern: str | bytes, *, start: int = 0) -> re.Match[bytes]:
        raw = pattern.encode() if isinstance(pattern, str) else pattern
        regex = re.compile(re.escape(raw))
        deadline = time.monotonic() + WAIT
        while (match := regex.search(self.data, start)) is None:
            assert time.monotonic() < deadline, f"no {regex.pattern!r} in {self.data[-2000:]!r}"
            self.read()
        return match

    def read(self) -> None:
        try:
            chunk = self.terminal.stream.sock.recv(262144)
        except TimeoutError:
            return
        assert chunk, f"the attach ended: {self.events} {self.data[-2000:]!r}"
        output, events = self.terminal.stream.decode(chunk)
        self.data += output
        self.events += events

    def settle(self, seconds: float = 1.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.read()

    def type(self, text: str) -> None:
        self.terminal.stream.sock.sendall(terminal_input_bytes(text.encode()))


def open_reader(session: Session, user_id: int, terminal_id: str = "1") -> Reader:
    return Reader(
        terminal_open(session=session, user_id=user_id, terminal_id=terminal_id, cols=COLS, rows=ROWS)
    )


def test_a_reattach_replays_the_output_as_it_was_and_the_program_goes_on(running, alice):
    first = open_reader(running, alice.id)
    try:
        first.until("$ ")
        first.type("seq -f line-%g 1 300; echo SEQ-$((6*7))-DONE; sleep 2; echo LATER-$((5*5))\r")
        first.until("SEQ-42-DONE")
        first.settle(0.3)
        seen = first.data
    finally:
        terminal_detach(terminal=first.terminal)

    again = open_reader(running, alice.id)
    try:
        # The replay is the very bytes the first attach got (well under the ring's MiB), then
        # the output of the program that ran on meanwhile.
        again.until("LATER-25")
        assert again.data.startswith(seen), (again.data[:300], seen[:300])
        numbers = [int(n) for n in LINE.findall(again.data)]
        assert numbers[-300:] == list(range(1, 301))
        assert again.data.count(b"LATER-25") == 1
    finally:
        terminal_detach(terminal=again.terminal)


def test_the_replay_is_the_last_mib_from_the_start_of_a_line(running, alice):
    first = open_reader(running, alice.id)
    try:
        first.until("$ ")
        # 200,000 numbered lines: about 2.2 MB, twice the ring.
        first.type("seq -f line-%g 1 200000; echo SEQ-$((6*7))-DONE\r")
        first.until("SEQ-42-DONE")
        first.settle(0.3)
    finally:
        terminal_detach(terminal=first.terminal)

    again = open_reader(running, alice.id)
    try:
        again.until("SEQ-42-DONE")
        again.settle(0.5)
        replay = again.data
        assert RING - 64 * 1024 < len(replay) <= RING
        assert replay.startswith(b"line-"), replay[:80]  # a whole line, never half a sequence
        numbers = [int(n) for n in LINE.findall(replay)]
        assert numbers == list(range(numbers[0], 200001)), numbers[:5]
    finally:
        terminal_detach(terminal=again.terminal)


def test_a_full_screen_program_whose_start_fell_out_of_the_ring_is_made_to_redraw(running, alice):
    first = open_reader(running, alice.id)
    program = (
        'bash -c \'trap "echo RE\\$((40+2))DRAWN" WINCH; printf "\\033[?1049h"; '
        "seq 1 300000; echo IN-$((3*3))-ALT; while :; do sleep 0.1; done'\r"
    )
    try:
        first.until("$ ")
        first.type(program)
        first.until("IN-9-ALT")
    finally:
        terminal_detach(terminal=first.terminal)

    again = open_reader(running, alice.id)
    try:
        again.until("RE42DRAWN")
        # Only the switch to the alternate screen (and a clear) came before the program's redraw.
        assert again.data.startswith(ALT_ON + b"\x1b[H\x1b[2J"), again.data[:80]
        assert b"IN-9-ALT" not in again.data
        again.type("\x03")
    finally:
        terminal_detach(terminal=again.terminal)


def test_a_new_terminal_starts_with_its_prompt(running, alice):
    reader = open_reader(running, alice.id, "fresh")
    try:
        reader.until("$ ")
        assert b"line-" not in reader.data
    finally:
        terminal_detach(terminal=reader.terminal)
