"""The plugin's private protocol pipes.

Before serving, stdin and stdout are copied into descriptors only the
protocol uses (Python's `os.dup` makes them non-inheritable, so child
processes never see them); then fd 0 is pointed at /dev/null and fd 1 at
stderr. A stray `print`, a library logging to stdout, or a child process a
handler starts can neither corrupt the frames nor swallow requests.
"""

import os
import sys


def take_protocol_stdio():
    """Returns (input, output): binary files that only frames use."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    protocol_in = os.dup(0)
    protocol_out = os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    # sys.stdout now writes to stderr; line-buffered so prints appear in order.
    try:
        sys.stdout.reconfigure(line_buffering=True)
    except (AttributeError, ValueError):
        pass
    return os.fdopen(protocol_in, "rb", buffering=64 * 1024), os.fdopen(protocol_out, "wb", buffering=64 * 1024)
