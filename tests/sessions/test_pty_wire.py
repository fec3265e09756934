"""The terminals' wire into a sandbox, without Docker: the frames the backend writes to an attach
(``sessions_app.runtime.pty``), how the Docker backend takes an attach's output apart, and the
command lines that a user's ``pkill -f`` sees."""

from __future__ import annotations

import json
import socket
import struct
import types

import pytest

from sandbox import AGENT_SOURCE, PTY_ATTACH_SOURCE
from sessions_app.runtime.docker import DockerTerminalStream
from sessions_app.runtime.pty import close_frame, input_frame, pty_attach_argv, resize_frame


def test_frames_are_a_kind_a_length_and_the_payload():
    assert input_frame(b"ls\r") == b"I\x00\x00\x00\x03ls\r"
    assert resize_frame(cols=120, rows=40) == b"R\x00\x00\x00\x04" + struct.pack(">HH", 120, 40)
    assert close_frame() == b"C\x00\x00\x00\x00"


def test_a_resize_is_clamped_to_what_the_pty_host_takes():
    assert resize_frame(cols=0, rows=100_000)[5:] == struct.pack(">HH", 2, 500)
    assert resize_frame(cols=5000, rows=1)[5:] == struct.pack(">HH", 1000, 2)


def test_the_attach_is_its_own_small_program_on_the_images_interpreter_isolated():
    argv = pty_attach_argv("main", cols=80, rows=24)
    assert argv[:5] == ["/usr/bin/python3", "-I", "-S", "-u", "-c"]
    assert argv[5] == PTY_ATTACH_SOURCE and len(PTY_ATTACH_SOURCE) < 8 * 1024
    assert argv[-4:] == ["pty-attach", "main", "80", "24"]


def test_no_helper_command_line_names_the_shell():
    """The helper, its tunnel and every attach carry the program on their command line: a user's
    ``pkill -f bash`` must not match them (the PTY host is renamed; see docs/terminal-protocol.md)."""
    assert "bash" not in AGENT_SOURCE and "bash" not in PTY_ATTACH_SOURCE
    assert not [arg for arg in pty_attach_argv("t", cols=80, rows=24) if "bash" in arg]


def _docker_frame(stream: int, data: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + struct.pack(">I", len(data)) + data


@pytest.fixture
def stream():
    left, right = socket.socketpair()
    yield DockerTerminalStream(types.SimpleNamespace(_sock=left, close=left.close))
    left.close()
    right.close()


def test_the_docker_stream_splits_output_from_events_whatever_the_cuts(stream):
    exit_line = json.dumps({"type": "exit", "code": 3}).encode() + b"\n"
    wire = _docker_frame(1, b"hello ") + _docker_frame(2, exit_line[:5]) + _docker_frame(1, b"world")
    wire += _docker_frame(2, exit_line[5:])
    output, events = b"", []
    for i in range(0, len(wire), 3):  # three bytes at a time: every header and line is cut
        out, found = stream.decode(wire[i : i + 3])
        output += out
        events += found
    assert output == b"hello world"
    assert events == [{"type": "exit", "code": 3}]


def test_the_docker_stream_skips_lines_that_are_not_events_and_refuses_garbage(stream):
    assert stream.decode(_docker_frame(2, b"Traceback (most recent call last):\n")) == (b"", [])
    with pytest.raises(ValueError):
        stream.decode(_docker_frame(7, b"x"))


def test_the_docker_stream_refuses_an_endless_event_line(stream):
    with pytest.raises(ValueError):
        stream.decode(_docker_frame(2, b"x" * (DockerTerminalStream.EVENTS_MAX + 1)))
