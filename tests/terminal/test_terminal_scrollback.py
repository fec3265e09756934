"""The terminal gives xterm.js its scrollback: tmux attaches without the alternate screen, every
attach first prints the pane's whole history, and tmux's title says when a full-screen program
has the pane (terminal_app/services.py, static/vibecode/ide/terminals.js).

Real things: the TTY is opened through the service on a real sandbox, as the consumer does.
Every read waits for a marker with a generous deadline; nothing depends on how tmux splits its
output.
"""

from __future__ import annotations

import re
import time

import pytest

from sessions_app import services
from sessions_app.models import Session
from terminal_app.services import OpenTerminal, terminal_detach, terminal_open

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

WAIT = 60.0  # seconds: generous for a loaded machine; every wait ends as soon as it is satisfied
COLS, ROWS = 80, 24
LINE = re.compile(rb"line-(\d+)")
ALTERNATE_SCREEN = re.compile(rb"\x1b\[\?(1049|1047|47)h")
SCROLL_UP = re.compile(rb"\x1b\[\d*S")  # CSI n S scrolls without keeping the lines
TITLE = re.compile(rb"\x1b\]0;(vibecode:[a-z]+)\x07")


@pytest.fixture
def running(alice, sandboxes) -> Session:
    return services.session_create(user=alice, name="scrollback")


class Reader:
    """Everything a terminal's TTY has sent so far, read on demand until a pattern shows."""

    def __init__(self, terminal: OpenTerminal) -> None:
        self.terminal = terminal
        self.data = b""
        terminal.tty.sock.settimeout(1.0)

    def until(self, pattern: str | bytes, *, start: int = 0) -> re.Match[bytes]:
        raw = pattern.encode() if isinstance(pattern, str) else pattern
        regex = re.compile(re.escape(raw))
        deadline = time.monotonic() + WAIT
        while (match := regex.search(self.data, start)) is None:
            assert time.monotonic() < deadline, f"no {regex.pattern!r} in {self.data[-2000:]!r}"
            try:
                chunk = self.terminal.tty.sock.recv(65536)
            except TimeoutError:
                continue
            assert chunk, f"the TTY ended before {regex.pattern!r}: {self.data[-2000:]!r}"
            self.data += chunk
        return match

    def type(self, text: str) -> None:
        self.terminal.tty.sock.sendall(text.encode())


def open_reader(session: Session, user_id: int) -> Reader:
    return Reader(terminal_open(session=session, user_id=user_id, terminal_id="1", cols=COLS, rows=ROWS))


def test_a_reattach_gets_the_whole_history_then_the_screen(running, alice):
    first = open_reader(running, alice.id)
    try:
        first.until("$ ")
        first.type("seq -f line-%g 1 300; echo SEQ-$((6*7))-DONE\r")
        first.until("SEQ-42-DONE")
        # tmux draws for xterm.js on its main screen (where lines scroll into the scrollback),
        # and never scrolls with CSI S (which would drop them).
        assert not ALTERNATE_SCREEN.search(first.data)
        assert not SCROLL_UP.search(first.data)
        assert TITLE.search(first.data).group(1) == b"vibecode:main"
    finally:
        terminal_detach(terminal=first.terminal)

    again = open_reader(running, alice.id)
    try:
        # The history comes with the terminal, to be sent before its output: every line above
        # the screen, in order, as terminal output (CR LF), then enough newlines to push it all
        # into a new xterm.js's scrollback before tmux clears the screen to draw it.
        history = again.terminal.history
        numbers = [int(n) for n in LINE.findall(history)]
        assert numbers == list(range(1, len(numbers) + 1)), numbers
        assert numbers[-1] >= 300 - ROWS, numbers[-1]
        assert b"\n" not in history.replace(b"\r\n", b"")
        after_last = history[history.rindex(b"line-%d" % numbers[-1]) :]
        assert after_last.endswith(b"\r\n" * ROWS), after_last
        # tmux draws the rest on its screen: up to line-300 and the prompt.
        again.until("SEQ-42-DONE")
        screen = [int(n) for n in LINE.findall(again.data)]
        assert screen[-1] == 300 and screen[0] <= numbers[-1] + 1, screen
        assert not ALTERNATE_SCREEN.search(again.data)
    finally:
        terminal_detach(terminal=again.terminal)


def test_a_new_terminal_has_no_history(running, alice):
    reader = open_reader(running, alice.id)
    try:
        assert reader.terminal.history == b""
        reader.until("$ ")
    finally:
        terminal_detach(terminal=reader.terminal)
