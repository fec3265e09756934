"""The sandbox image and the program that runs inside every sandbox.

* ``agent.py`` is the in-sandbox helper. It is not imported by the backend: the runtime sends it
  as ``python3 -c`` (see :data:`AGENT_PROGRAM`), so the image needs nothing of ours.
* ``builder.py`` builds the image offline (debootstrap + ``docker import``); ``Dockerfile`` is
  the same image for machines that can pull.
"""

from __future__ import annotations

import base64
import zlib
from pathlib import Path

#: The helper's source, as written.
AGENT_SOURCE = Path(__file__).with_name("agent.py").read_text()

#: Linux caps one argument (and one environment string) at 32 pages: 128 KiB (MAX_ARG_STRLEN).
MAX_ARG_BYTES = 128 * 1024

#: What the runtime passes to ``python3 -c``: the source packed (zlib, then base85) and unpacked by
#: a one-line stub. It keeps the argument far under :data:`MAX_ARG_BYTES` as the helper grows
#: (124 KB of source would be one edit away from no helper starting at all), and it keeps the
#: source's words off the command line, where a user's ``pkill -f <word>`` would match them.
_PACKED = base64.b85encode(zlib.compress(AGENT_SOURCE.encode(), 9)).decode()
AGENT_PROGRAM = f"import base64,zlib;exec(zlib.decompress(base64.b85decode({_PACKED!r})))"
