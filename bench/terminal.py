"""The terminal over the real wire: a real daphne, a real WebSocket client, the PTY host in a real
sandbox, beside the raw Docker floor measured in the same run.

    .venv/bin/python -m bench.terminal [--keys N] [--opens N] [--terminals N] [--mb N]

Measured: keystroke echo round trip (one key typed at the bash prompt, until its echo comes
back), output throughput (``head -c N /dev/zero | tr '\\0' a`` in the terminal), time to open a
terminal (connect until the first output) and daphne's memory per idle terminal (RSS delta with
200 open, over 200).

Every figure through daphne is printed with the same figure for the PTY host reached by a raw
Docker exec of its attach (no daphne, no WebSocket), so what the PTY host costs and what the
backend costs can be told apart. The floor is a raw exec TTY running ``cat``/``head`` with no
PTY host.

Targets (issue 17): the terminal adds at most 0.5 ms p50 to the echo; throughput at least 90 %
of the raw exec TTY; opening at most 50 ms p50.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    Stats,
    docker_client,
    ensure_image,
    print_header,
    print_row,
    sandbox_image,
    serve_checkout,
)
from bench.django_setup import bench_django
from bench.docker_floor import floor_for

ACK_EVERY = 64 * 1024
KEYS = "abcdefghijklmnopqrstuvwxyz"
KEYS_PER_LINE = 40  # then Ctrl-U, so the line never wraps
ANSI = re.compile(rb"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][A-Za-z0-9]|[=>78DEHMc])")
PROMPT = re.compile(rb"\$ ")
END_MARK = b"EN2D"  # what `echo EN$((1+1))D` prints; the typed line itself cannot match it

TARGET_ECHO_ADDED_MS = 0.5
TARGET_THROUGHPUT_RATIO = 0.9
TARGET_OPEN_MS = 50.0


def _strip(data: bytes) -> bytes:
    return ANSI.sub(b"", data)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# --- a daphne of our own ------------------------------------------------------------------------


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


# --- the terminal through daphne ------------------------------------------------------------------


class WsTerminal:
    """One terminal WebSocket, read like the IDE reads it (acknowledging every 64 KB)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.received = 0
        self.acked = 0
        self.tail = b""  # the last output, for until()

    @classmethod
    async def open(cls, url: str, origin: str) -> tuple[WsTerminal, float]:
        """Connect; returns the terminal and the seconds from connect to the first output."""
        from websockets.asyncio.client import connect
        from websockets.typing import Origin

        started = time.perf_counter()
        ws = await connect(url, origin=Origin(origin), proxy=None, compression=None, open_timeout=60)
        term = cls(ws)
        await term.output()
        return term, time.perf_counter() - started

    async def output(self) -> bytes:
        """The next frame of terminal output (status and other messages are skipped)."""
        while True:
            message = await self.ws.recv()
            if isinstance(message, bytes):
                self.received += len(message)
                self.tail = (self.tail + message)[-4096:]
                if self.received - self.acked >= ACK_EVERY:
                    self.acked = self.received
                    await self.ws.send(json.dumps({"type": "ack", "bytes": self.received}))
                return message
            parsed = json.loads(message)
            if parsed.get("type") in {"error", "exit"} or parsed.get("status") not in (None, "connected"):
                raise RuntimeError(f"terminal said {parsed}")

    async def type(self, text: str) -> None:
        await self.ws.send(json.dumps({"type": "input", "data": text}))

    async def until(self, pattern: re.Pattern[bytes], timeout: float = 60) -> None:
        """Read until ``pattern`` is in the output since the last :meth:`forget`."""
        try:
            async with asyncio.timeout(timeout):
                while not pattern.search(_strip(self.tail)):
                    await self.output()
        except TimeoutError:
            ended = self.tail[-300:]
            raise RuntimeError(f"no {pattern.pattern!r} within {timeout} s; output ended {ended!r}") from None

    def forget(self) -> None:
        self.tail = b""

    async def quiet(self, seconds: float = 0.05) -> None:
        """Read until nothing has come for ``seconds``."""
        with contextlib.suppress(TimeoutError):
            while True:
                async with asyncio.timeout(seconds):
                    await self.output()

    async def close(self) -> None:
        await self.ws.close()


async def ws_echo(term: WsTerminal, keys: int) -> Stats:
    await term.type("\r")
    await term.until(PROMPT)
    samples = []
    for i in range(keys + 10):  # the first 10 warm up
        if i % KEYS_PER_LINE == 0:
            await term.type("\x15")  # Ctrl-U: an empty line again
            await term.quiet()
        key = KEYS[i % len(KEYS)]
        started = time.perf_counter()
        await term.type(key)
        while key.encode() not in _strip(await term.output()):
            pass
        if i >= 10:
            samples.append(time.perf_counter() - started)
    await term.type("\x15")
    await term.quiet()
    return Stats.from_seconds(samples)


async def ws_throughput(term: WsTerminal, nbytes: int) -> tuple[float, float]:
    """(program MB/s, MB/s delivered to the client) for ``nbytes`` written in the terminal."""
    await term.quiet()
    term.forget()
    before = term.received
    started = time.perf_counter()
    await term.type(f"head -c {nbytes} /dev/zero | tr '\\0' a; echo EN$((1+1))D\r")
    await term.until(re.compile(re.escape(END_MARK)), timeout=600)
    elapsed = time.perf_counter() - started
    return nbytes / elapsed / 1e6, (term.received - before) / elapsed / 1e6


# --- the same PTY host through a raw Docker exec of its attach (no daphne) --------------------------


class RawAttach:
    """An attach to the sandbox's PTY host the way the consumer opens it (the runtime's
    ``open_terminal``: a Docker exec without a TTY), without daphne. ``opened`` is the seconds
    from exec create to the first output."""

    def __init__(
        self, runtime: Any, ref: Any, terminal_id: str, input_frame: Callable[[bytes], bytes]
    ) -> None:
        self.input_frame = input_frame
        started = time.perf_counter()
        self.stream = runtime.open_terminal(ref, terminal_id=terminal_id, cols=80, rows=24)
        self.sock: socket.socket = self.stream.sock
        self.sock.settimeout(60)
        self.first = self.recv()
        self.opened = time.perf_counter() - started

    def recv(self) -> bytes:
        """The next output bytes (events are dropped); raises at the end of the attach."""
        while True:
            chunk = self.sock.recv(1 << 18)
            if not chunk:
                raise RuntimeError("the attach ended")
            output, _ = self.stream.decode(chunk)
            if output:
                return bytes(output)

    def type(self, text: str) -> None:
        self.sock.sendall(self.input_frame(text.encode()))

    def until(self, pattern: re.Pattern[bytes]) -> int:
        tail, received = b"", 0
        while not pattern.search(_strip(tail)):
            chunk = self.recv()
            received += len(chunk)
            tail = (tail + chunk)[-4096:]
        return received

    def quiet(self, seconds: float = 0.05) -> None:
        self.sock.settimeout(seconds)
        with contextlib.suppress(TimeoutError):
            while self.recv():
                pass
        self.sock.settimeout(60)

    def close(self) -> None:
        self.stream.close()


def raw_echo(term: RawAttach, keys: int) -> Stats:
    term.type("\r")
    term.until(PROMPT)
    samples = []
    for i in range(keys + 10):
        if i % KEYS_PER_LINE == 0:
            term.type("\x15")
            term.quiet()
        key = KEYS[i % len(KEYS)]
        started = time.perf_counter()
        term.type(key)
        while key.encode() not in _strip(term.recv()):
            pass
        if i >= 10:
            samples.append(time.perf_counter() - started)
    term.type("\x15")
    term.quiet()
    return Stats.from_seconds(samples)


def raw_throughput(term: RawAttach, nbytes: int) -> tuple[float, float]:
    term.quiet()
    started = time.perf_counter()
    term.type(f"head -c {nbytes} /dev/zero | tr '\\0' a; echo EN$((1+1))D\r")
    received = term.until(re.compile(re.escape(END_MARK)))
    elapsed = time.perf_counter() - started
    return nbytes / elapsed / 1e6, received / elapsed / 1e6


# --- the run ---------------------------------------------------------------------------------------


async def measure(
    *,
    port: int,
    token: str,
    sessions: list[str],
    args: argparse.Namespace,
    pid: int,
    attach_raw: Callable[[str], RawAttach],
) -> dict[str, dict[str, Any]]:
    """Every figure through daphne and, interleaved so that both see the same machine load, for
    the PTY host reached by a raw exec. Returns ``{"daphne": {...}, "raw": {...}}``."""
    origin = f"http://127.0.0.1:{port}"

    def url(session: str, terminal_id: str) -> str:
        return (
            f"ws://127.0.0.1:{port}/api/vibecode/ws/terminal?session_id={session}"
            f"&terminal_id={terminal_id}&cols=80&rows=24&token={token}"
        )

    ours: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    main_session = sessions[0]
    term, _ = await WsTerminal.open(url(main_session, "bench"), origin)
    raw_term = attach_raw("rawbench")
    try:
        # The raw measurements block this event loop; daphne is another process, so the
        # WebSocket only waits, unread, meanwhile.
        blocks = 4
        raw_echoes: list[float] = []
        ws_echoes: list[float] = []
        for _ in range(blocks):
            raw_echoes += raw_echo(raw_term, max(1, args.keys // blocks)).samples
            ws_echoes += (await ws_echo(term, max(1, args.keys // blocks))).samples
        raw["echo"], ours["echo"] = Stats(tuple(raw_echoes)), Stats(tuple(ws_echoes))
        raw_rates, ws_rates = [], []
        for _ in range(3):
            raw_rates.append(raw_throughput(raw_term, args.mb * 1_000_000))
            ws_rates.append(await ws_throughput(term, args.mb * 1_000_000))
    finally:
        raw_term.close()
        await term.close()
    for out, rates in ((raw, raw_rates), (ours, ws_rates)):
        out["throughput"] = Stats(tuple(r[0] for r in rates), "MB/s")
        out["delivered"] = Stats(tuple(r[1] for r in rates), "MB/s")

    samples: dict[str, list[float]] = {key: [] for key in ("new", "again", "prompt", "raw_new", "raw_again")}
    for i in range(args.opens + 1):  # the first one warms up
        fresh_raw = attach_raw(f"rawopen{i}")
        fresh_raw.close()
        again_raw = attach_raw(f"rawopen{i}")
        again_raw.close()

        started = time.perf_counter()
        fresh, seconds = await WsTerminal.open(url(main_session, f"open{i}"), origin)
        await fresh.until(PROMPT)
        prompt = time.perf_counter() - started
        await fresh.close()
        # Let the closed attach exit, so that each figure is one open alone.
        await asyncio.sleep(0.5)
        again, reopen = await WsTerminal.open(url(main_session, f"open{i}"), origin)
        await again.close()
        await asyncio.sleep(0.5)
        if i:
            samples["new"].append(seconds)
            samples["again"].append(reopen)
            samples["prompt"].append(prompt)
            samples["raw_new"].append(fresh_raw.opened)
            samples["raw_again"].append(again_raw.opened)
    ours["open_new"] = Stats.from_seconds(samples["new"])
    ours["prompt_new"] = Stats.from_seconds(samples["prompt"])
    ours["open_again"] = Stats.from_seconds(samples["again"])
    raw["open_new"] = Stats.from_seconds(samples["raw_new"])
    raw["open_again"] = Stats.from_seconds(samples["raw_again"])

    # Idle terminals: spread over the sessions, each its own PTY, each read to its prompt.
    # Opened a few at a time, as tabs and reloads would.
    await asyncio.sleep(1.0)
    before = rss_kb(pid)
    idle: list[WsTerminal] = []
    gate = asyncio.Semaphore(10)

    async def open_idle(i: int) -> None:
        async with gate:
            term, _ = await WsTerminal.open(url(sessions[i % len(sessions)], f"idle{i}"), origin)
            await term.until(PROMPT)
            idle.append(term)

    await asyncio.gather(*(open_idle(i) for i in range(args.terminals)))
    await asyncio.sleep(2.0)
    ours["idle_open"] = len(idle)
    ours["rss_before_kb"], ours["rss_idle_kb"] = before, rss_kb(pid)
    await asyncio.gather(*(term.close() for term in idle))
    await asyncio.sleep(2.0)
    ours["rss_after_kb"] = rss_kb(pid)
    return {"daphne": ours, "raw": raw}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.terminal", description=__doc__)
    parser.add_argument("--keys", type=int, default=200, help="keystrokes timed for the echo")
    parser.add_argument("--opens", type=int, default=20, help="terminals opened for the open time")
    parser.add_argument("--terminals", type=int, default=200, help="idle terminals for the memory figure")
    parser.add_argument("--per-session", type=int, default=50, help="idle terminals per sandbox")
    parser.add_argument("--mb", type=int, default=50, help="MB written for the throughput")
    args = parser.parse_args(argv)
    if min(args.keys, args.opens, args.terminals, args.per_session, args.mb) < 1:
        parser.error("every count must be at least 1")

    client = docker_client()
    image = sandbox_image()
    ensure_image(client, image)
    floor = floor_for(client, image)

    started_all = time.perf_counter()
    with bench_django() as user:
        from rest_framework_simplejwt.tokens import AccessToken

        from sessions_app import services

        count = -(-args.terminals // args.per_session)
        sessions = [services.session_create(user=user, name=f"terminal bench {i}") for i in range(count)]
        from sessions_app.runtime import get_runtime
        from sessions_app.runtime.pty import input_frame
        from sessions_app.specs import session_ref

        token = str(AccessToken.for_user(user))
        ref = session_ref(sessions[0])

        def attach_raw(terminal_id: str) -> RawAttach:
            return RawAttach(get_runtime(), ref, terminal_id, input_frame)

        log_path = Path(os.environ["VIBECODE_VAR_DIR"]) / "daphne.log"
        with serve_checkout(os.environ, log_path) as (process, port):
            results = asyncio.run(
                measure(
                    port=port,
                    token=token,
                    sessions=[s.public_id for s in sessions],
                    args=args,
                    pid=process.pid,
                    attach_raw=attach_raw,
                )
            )
        ours, raw = results["daphne"], results["raw"]
    elapsed = time.perf_counter() - started_all

    echo_floor, tput_floor = floor["tty_echo"], floor["tty_throughput"]
    print_header(f"Terminal through daphne and a WebSocket (SQLite, runc, {elapsed:.1f} s)", with_ratio=True)
    print_row("keystroke echo, raw exec TTY (floor)", echo_floor)
    print_row("keystroke echo, PTY host via raw exec", raw["echo"], floor=echo_floor)
    print_row("keystroke echo, PTY host via daphne + WebSocket", ours["echo"], floor=echo_floor)
    print_row("output, raw exec TTY (floor)", tput_floor)
    print_row(f"output {args.mb} MB, PTY host via raw exec", raw["throughput"], floor=tput_floor)
    print_row(f"output {args.mb} MB, PTY host via daphne + WebSocket", ours["throughput"], floor=tput_floor)
    print_row("  bytes delivered, via raw exec", raw["delivered"])
    print_row("  bytes delivered, via daphne + WebSocket", ours["delivered"])
    print_row("open new terminal, PTY host via raw exec", raw["open_new"], floor=floor["exec_true"])
    print_row("open new terminal, via daphne (to 1st output)", ours["open_new"], floor=floor["exec_true"])
    print_row("open new terminal, via daphne (to prompt)", ours["prompt_new"], floor=floor["exec_true"])
    print_row("reattach, PTY host via raw exec", raw["open_again"], floor=floor["exec_true"])
    print_row("reattach, via daphne (to 1st output)", ours["open_again"], floor=floor["exec_true"])
    per_terminal_kb = (ours["rss_idle_kb"] - ours["rss_before_kb"]) / max(1, ours["idle_open"])
    print_row(f"daphne RSS per idle terminal ({ours['idle_open']} open)", Stats((per_terminal_kb,), "KB"))
    print(
        f"  echo p50/p99: floor {echo_floor.median:.2f}/{echo_floor.p99:.2f} ms, "
        f"PTY host via raw exec {raw['echo'].median:.2f}/{raw['echo'].p99:.2f} ms, "
        f"via daphne {ours['echo'].median:.2f}/{ours['echo'].p99:.2f} ms"
    )
    print(
        f"  daphne RSS: {ours['rss_before_kb'] / 1024:.1f} MB before, {ours['rss_idle_kb'] / 1024:.1f} MB "
        f"with {ours['idle_open']} idle terminals, {ours['rss_after_kb'] / 1024:.1f} MB after closing them"
    )
    print(
        "  throughput is the program's rate (bytes written / time to the end marker); the PTY host "
        "passes the bytes through, so the client gets what the program writes (plus the PTY's CR)"
    )
    print(
        "  open rows: raw exec = exec create + start until the attach's first output (a new terminal: "
        "its shell's prompt; a reattach: the replay); via daphne = WebSocket connect until the first "
        "output frame. Ratios are against exec_run true"
    )

    added = ours["echo"].median - echo_floor.median
    backend = ours["echo"].median - raw["echo"].median
    ratio = ours["throughput"].median / tput_floor.median
    print()
    print("targets")
    print(
        f"  echo p50 added over raw exec TTY  {added:+7.2f} ms  <= {TARGET_ECHO_ADDED_MS:g} ms  "
        f"{_verdict(added <= TARGET_ECHO_ADDED_MS)}  "
        f"(PTY host {raw['echo'].median - echo_floor.median:+.2f} ms, "
        f"daphne + WebSocket {backend:+.2f} ms)"
    )
    print(
        f"  output throughput vs raw exec TTY  {ratio:7.0%}     >= {TARGET_THROUGHPUT_RATIO:.0%}    "
        f"{_verdict(ratio >= TARGET_THROUGHPUT_RATIO)}  (PTY host via raw exec alone "
        f"{raw['throughput'].median / tput_floor.median:.0%})"
    )
    opening = ours["open_new"].median
    print(
        f"  open a terminal p50               {opening:7.1f} ms  <= {TARGET_OPEN_MS:g} ms  "
        f"{_verdict(opening <= TARGET_OPEN_MS)}  (PTY host via raw exec {raw['open_new'].median:.1f} ms; "
        f"reattach {ours['open_again'].median:.1f} ms)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
