"""Busy processes for ``vidllie bench --load N``, and the loaded/idle ratios of two bench runs.

A loaded run shows what vidllie gets from a machine that is doing other work (a recorder,
detection, a stream server): each busy process is a Python loop that keeps one CPU busy::

    with busy_processes(2):
        ...                                   # the timed run
    # on leaving (normally, on an error or on Ctrl-C) every process is killed and reaped

The loops run outside vidllie's session, so the terminal's Ctrl-C reaches only vidllie, which
kills them. Each loop also ends by itself once its parent is gone (checked every ~10 ms), so not
even a killed vidllie leaves one behind.

Where they run matters on Linux with autogroup scheduling (``/proc/sys/kernel/sched_autogroup_enabled``):
CPU time is shared equally between *sessions* first. ``sessions="each"`` (the default) starts every
loop in a session of its own, like separate services: beside two of them a process is entitled to
a third of the machine. ``sessions="one"`` starts them all in one session, like loops started from
one shell: beside them a process is entitled to half.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

# Spins, and every million iterations stops if vidllie (its parent) is gone.
BUSY_LOOP = (
    "import os\n"
    "parent = {parent}\n"
    "while os.getppid() == parent:\n"
    "    for _ in range(1000000): pass\n"
)


# One session for all: the first loop forks the others, which stop once it is gone.
BUSY_GROUP = (
    "import os\n"
    "parent = {parent}\n"
    "for _ in range({others}):\n"
    "    if os.fork() == 0:\n"
    "        parent = os.getppid()\n"
    "        break\n"
    "while os.getppid() == parent:\n"
    "    for _ in range(1000000): pass\n"
)
SESSIONS = ("each", "one")


@contextlib.contextmanager
def busy_processes(n: int, sessions: str = "each") -> Iterator[list[subprocess.Popen]]:
    """Run the block with ``n`` busy processes, in a session each or all in one (see the module
    docstring); all are killed when it ends. Returns the started processes (with ``"one"``: the
    first loop, the leader of the others)."""
    if n < 0:
        raise ValueError("the number of busy processes must be >= 0")
    if sessions not in SESSIONS:
        raise ValueError(f"sessions must be one of {', '.join(SESSIONS)}, got {sessions!r}")
    procs: list[subprocess.Popen] = []
    codes = ([BUSY_GROUP.format(parent=os.getpid(), others=n - 1)] if sessions == "one" and n
             else [BUSY_LOOP.format(parent=os.getpid())] * n)
    try:
        for code in codes:
            procs.append(subprocess.Popen(
                [sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True,
            ))
        yield procs
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, 9)  # the loop and, in one session, the loops it forked
        for p in procs:
            p.wait()


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def load_ratios(idle: dict[str, Any], loaded: dict[str, Any]) -> dict[str, Any]:
    """Loaded against idle, from two :func:`~vidllie.jobs.bench.run_bench`-style reports:
    ``end_to_end`` and ``model_only`` are frame-rate ratios (loaded / idle: 1.0 = unaffected, 0.5 =
    half the speed), ``stages`` are time ratios (loaded ms per frame / idle: 2.0 = twice as slow).

    Example:
        >>> idle = {"end_to_end": {"fps": 10.0}, "model_only": {"fps": 20.0},
        ...         "stages": {"smoothing": {"ms_per_frame": 5.0}}}
        >>> loaded = {"end_to_end": {"fps": 6.0}, "model_only": {"fps": 10.0},
        ...           "stages": {"smoothing": {"ms_per_frame": 7.5}}}
        >>> load_ratios(idle, loaded)
        {'end_to_end': 0.6, 'model_only': 0.5, 'stages': {'smoothing': 1.5}}
    """
    out = {
        "end_to_end": _ratio(loaded["end_to_end"]["fps"], idle["end_to_end"]["fps"]),
        "model_only": _ratio(loaded["model_only"]["fps"], idle["model_only"]["fps"]),
        "stages": {
            name: _ratio(loaded["stages"].get(name, {}).get("ms_per_frame"), s.get("ms_per_frame"))
            for name, s in idle["stages"].items()
        },
    }
    if "cpu" in idle and "cpu" in loaded:
        out["cpu"] = {k: _ratio(loaded["cpu"].get(k), idle["cpu"].get(k)) for k in ("cores_used", "ms_per_frame")}
    return out
