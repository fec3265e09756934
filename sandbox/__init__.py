"""The sandbox image and the program that runs inside every sandbox.

* ``agent.py`` is the in-sandbox helper. It is not imported by the backend: the runtime sends its
  source as ``python3 -c`` (see :data:`AGENT_SOURCE`), so the image needs nothing of ours.
* ``pty_attach.py`` relays one terminal connection to the sandbox's PTY host (``agent.py``'s
  ``pty-host`` mode); sent the same way (:data:`PTY_ATTACH_SOURCE`), kept small because one
  starts per connection.
* ``builder.py`` builds the image offline (debootstrap + ``docker import``); ``Dockerfile`` is
  the same image for machines that can pull.
"""

from __future__ import annotations

from pathlib import Path

AGENT_SOURCE = Path(__file__).with_name("agent.py").read_text()
PTY_ATTACH_SOURCE = Path(__file__).with_name("pty_attach.py").read_text()
