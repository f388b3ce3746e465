"""Stop signals (Ctrl-C, SIGTERM from ``timeout``/systemd/Docker, SIGHUP from a closed terminal).

Two policies, both main-thread only (Python runs signal handlers there):

- :func:`signals_interrupt`: SIGTERM and SIGHUP raise :class:`Interrupted` like Ctrl-C raises
  ``KeyboardInterrupt``, so a file job is aborted cleanly (no temp file left) and the CLI can
  report it with the conventional exit code (128 + signal number).
- :func:`signals_finish`: the first SIGINT/SIGTERM/SIGHUP only sets an event (a live recording
  then stops reading and *finishes* its output); a second one raises :class:`Interrupted`.

    with signals_interrupt():
        enhance_video_file(enhancer, src, dst)    # SIGTERM -> Interrupted, nothing under dst
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_STOP_SIGNALS = tuple(s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None),
                                  getattr(signal, "SIGHUP", None)) if s is not None)


class Interrupted(KeyboardInterrupt):
    """A stop signal turned into an exception; ``exit_code`` is 128 + the signal number."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def signal_name(err: BaseException) -> str:
    """'SIGTERM' for an :class:`Interrupted`, 'SIGINT' for a plain ``KeyboardInterrupt``."""
    return err.name if isinstance(err, Interrupted) else "SIGINT"


def exit_code(err: BaseException) -> int:
    return err.exit_code if isinstance(err, Interrupted) else 128 + signal.SIGINT


@contextlib.contextmanager
def _handlers(signals: tuple[int, ...], handler) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may install handlers; leave the defaults
        return
    previous = {s: signal.getsignal(s) for s in signals}
    try:
        for s in signals:
            signal.signal(s, handler)
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _raise(signum, frame) -> None:  # noqa: ARG001
    raise Interrupted(signum)


def signals_interrupt() -> contextlib.AbstractContextManager[None]:
    """SIGTERM and SIGHUP raise :class:`Interrupted` in the main thread (SIGINT stays Ctrl-C)."""
    return _handlers(tuple(s for s in _STOP_SIGNALS if s != signal.SIGINT), _raise)


@contextlib.contextmanager
def signals_finish(stop: threading.Event) -> Iterator[threading.Event]:
    """First stop signal: set ``stop`` (finish the output); a second one: raise Interrupted.

    ``stop.signum`` is set to the first signal's number (for the message)."""

    def handler(signum, frame) -> None:  # noqa: ARG001
        if stop.is_set():
            raise Interrupted(signum)
        stop.signum = int(signum)  # type: ignore[attr-defined]
        stop.set()

    with _handlers(_STOP_SIGNALS, handler):
        yield stop
