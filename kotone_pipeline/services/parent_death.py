"""A child process that ends when the process that started it dies, however it dies (SIGKILL included).

Used for the local job runner's training command and for the ``dagster dev`` a headless command starts.
Standard library only: the local job runner imports neither Dagster nor W&B.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def dies_with_parent(sig: signal.Signals) -> Callable[[], None] | None:
    """For Popen's ``preexec_fn`` on Linux: the kernel sends the child ``sig`` when this process dies.
    Elsewhere None (the caller stops its child on exit, or the child watches its parent)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child between fork and exec only calls it
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the setting took effect
            os._exit(1)

    return preexec
