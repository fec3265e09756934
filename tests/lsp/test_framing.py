"""LSP's framing, read from a process the user controls: every bound holds."""

from __future__ import annotations

import pytest

from lsp_app.framing import HEADER_MAX_BYTES, FrameError, FrameReader, frame


def test_messages_split_anywhere_come_out_whole_and_in_order():
    stream = frame(b'{"id":1}') + frame('{"x":"é"}'.encode()) + frame(b"{}")
    reader = FrameReader(max_body=1024)
    out: list[str] = []
    for byte in range(len(stream)):
        out += reader.feed(stream[byte : byte + 1])
    assert out == ['{"id":1}', '{"x":"é"}', "{}"]


def test_other_headers_are_allowed():
    reader = FrameReader(max_body=1024)
    data = b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\nContent-Length: 2\r\n\r\n{}"
    assert reader.feed(data) == ["{}"]


@pytest.mark.parametrize(
    "data",
    [
        b"Content-Length: 2000\r\n\r\n",  # over the cap, refused before the body arrives
        b"Content-Length: x\r\n\r\n{}",
        b"Content-Length: -1\r\n\r\n",
        b"garbage with no colon\r\n\r\n",
        b"Content-Type: text/plain\r\n\r\n{}",
        b"Content-Length: 2\r\n\r\n\xff\xfe",
        b"Content-Length: 99999999999999999999\r\n\r\n",
    ],
)
def test_a_broken_or_oversized_message_raises(data):
    with pytest.raises(FrameError):
        FrameReader(max_body=1024).feed(data)


def test_a_header_that_never_ends_is_refused_at_8_kib():
    reader = FrameReader(max_body=1024)
    reader.feed(b"X" * (HEADER_MAX_BYTES - 1))
    with pytest.raises(FrameError):
        reader.feed(b"XX")
