"""Runs inside the sandbox, as the sandbox user, under ``python3 -c``: one supervised command.

Reads a JSON request on stdin: ``{argv, cwd, env, timeout, limit, stdin}`` (stdin base64).
Writes one JSON result on stdout: ``{exit_code, stdout, stderr, duration_ms, timed_out,
truncated, oom_killed, max_rss_kb}`` (outputs base64). The command runs in a new session, so that
on timeout, and at the end in any case, its whole process group is killed: an exec leaves no
process behind. Each output stream keeps ``limit`` bytes; the rest is read and thrown away, so a
flood never blocks the command nor fills memory. This file is standard library only, because it
runs on the sandbox image's python3.
"""

import base64
import json
import os
import resource
import select
import signal
import subprocess
import sys
import time


def oom_kills():
    for path in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        try:
            with open(path) as events:
                for line in events:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


def kill_group(child):
    """SIGKILL the command's process group until it is empty. The direct child is reaped here;
    its orphans are reaped by the container's init."""
    for _ in range(400):
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return
        child.poll()
        time.sleep(0.002)


def main():
    request = json.loads(sys.stdin.buffer.read())
    limit = int(request["limit"])
    deadline_after = float(request["timeout"])
    stdin_data = base64.b64decode(request.get("stdin") or "")
    env = dict(os.environ)
    env.update(request.get("env") or {})
    oom_before = oom_kills()
    started = time.monotonic()
    try:
        child = subprocess.Popen(
            request["argv"],
            cwd=request.get("cwd") or "/workspace",
            env=env,
            start_new_session=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError, OSError) as exc:
        message = f"{request['argv'][0]}: {exc.strerror or exc}\n".encode()
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        result = {
            "exit_code": code,
            "stdout": "",
            "stderr": base64.b64encode(message).decode(),
            "duration_ms": 0,
            "timed_out": False,
            "truncated": False,
            "oom_killed": False,
            "max_rss_kb": None,
        }
        sys.stdout.write(json.dumps(result))
        return

    kept = {child.stdout.fileno(): bytearray(), child.stderr.fileno(): bytearray()}
    open_fds = set(kept)
    truncated = False
    stdin_fd = child.stdin.fileno()
    os.set_blocking(stdin_fd, False)
    pending_in = stdin_data
    if not pending_in:
        child.stdin.close()
        stdin_fd = None
    deadline = started + deadline_after
    timed_out = False
    exited_at = None
    while open_fds or child.poll() is None:
        now = time.monotonic()
        remaining = deadline - now
        if remaining <= 0:
            timed_out = True
            break
        if exited_at is None and child.poll() is not None:
            exited_at = now
        if exited_at is not None and now - exited_at > 0.2:
            break  # the command is done; a background child holding its output is not waited for
        writers = [stdin_fd] if stdin_fd is not None else []
        if not open_fds:
            # Output closed but the process lives on: wait for it without spinning.
            try:
                child.wait(timeout=min(remaining, 0.05))
            except subprocess.TimeoutExpired:
                pass
            continue
        readable, writable, _ = select.select(list(open_fds), writers, [], min(remaining, 0.1))
        for fd in readable:
            chunk = os.read(fd, 65536)
            if not chunk:
                open_fds.discard(fd)
                continue
            room = limit - len(kept[fd])
            if room > 0:
                kept[fd] += chunk[:room]
            if len(chunk) > room:
                truncated = True
        if writable:
            try:
                sent = os.write(stdin_fd, pending_in[:65536])
                pending_in = pending_in[sent:]
            except BrokenPipeError:
                pending_in = b""
            if not pending_in:
                child.stdin.close()
                stdin_fd = None
    kill_group(child)
    returncode = child.wait()
    duration_ms = int((time.monotonic() - started) * 1000)
    oom_after = oom_kills()
    killed = returncode == -signal.SIGKILL
    if oom_before is not None and oom_after is not None:
        oom_killed = oom_after > oom_before and killed and not timed_out
    else:
        oom_killed = killed and not timed_out  # no cgroup view (gVisor): a SIGKILL we did not send
    result = {
        "exit_code": None if timed_out else (returncode if returncode >= 0 else 128 - returncode),
        "stdout": base64.b64encode(bytes(kept[child.stdout.fileno()])).decode(),
        "stderr": base64.b64encode(bytes(kept[child.stderr.fileno()])).decode(),
        "duration_ms": duration_ms,
        "timed_out": timed_out,
        "truncated": truncated,
        "oom_killed": oom_killed,
        "max_rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss or None,
    }
    sys.stdout.write(json.dumps(result))


main()
