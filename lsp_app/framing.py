"""LSP's base protocol: ``Content-Length: N\r\n\r\n`` then N bytes of JSON (UTF-8).

The bytes come from a process the sandbox's user controls, so :class:`FrameReader` bounds
everything: the header block, the body size, and the encoding. A violation raises
:class:`FrameError` and the stream is dropped; nothing is resynchronised.
"""

from __future__ import annotations

HEADER_MAX_BYTES = 8 * 1024
_END = b"\r\n\r\n"


class FrameError(Exception):
    """The stream broke LSP's framing (or a bound): close it."""


def frame(body: bytes) -> bytes:
    """One LSP message: the header, then ``body``."""
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class FrameReader:
    """Feed bytes in, take whole message bodies out (as ``str``), in order."""

    def __init__(self, *, max_body: int) -> None:
        self.max_body = max_body
        self._buffer = bytearray()
        self._need: int | None = None  # the body length of the message being read

    def feed(self, data: bytes) -> list[str]:
        self._buffer += data
        messages: list[str] = []
        while True:
            if self._need is None:
                end = self._buffer.find(_END)
                if end < 0:
                    if len(self._buffer) > HEADER_MAX_BYTES:
                        raise FrameError("a header block over 8 KiB")
                    return messages
                if end > HEADER_MAX_BYTES:
                    raise FrameError("a header block over 8 KiB")
                self._need = self._content_length(bytes(self._buffer[:end]))
                del self._buffer[: end + len(_END)]
            if len(self._buffer) < self._need:
                return messages
            body = bytes(self._buffer[: self._need])
            del self._buffer[: self._need]
            self._need = None
            try:
                messages.append(body.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise FrameError("a message that is not UTF-8") from exc

    def _content_length(self, header: bytes) -> int:
        length: int | None = None
        for line in header.split(b"\r\n"):
            name, sep, value = line.partition(b":")
            if not sep:
                raise FrameError("a header line without a colon")
            if name.strip().lower() == b"content-length":
                text = value.strip()
                if not text.isdigit() or len(text) > 12:
                    raise FrameError("a Content-Length that is not a number")
                length = int(text)
        if length is None:
            raise FrameError("a message without Content-Length")
        if length > self.max_body:
            raise FrameError(f"a message of {length} bytes, over the {self.max_body}-byte cap")
        return length
