"""What every ``vidllie`` command shares: one-line errors and warnings (:func:`user_errors`),
messages on stderr (:func:`say`), the progress bar (:class:`Progress`) and JSON reports
(:func:`write_json`). The command modules (``cli_*.py``) import this, never :mod:`vidllie.cli`.
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import typer

from vidllie.errors import OutputError, VidllieError


def say(message: str) -> None:
    try:
        typer.echo(message, err=True)
    except OSError:  # stderr gone (terminal closed: SIGHUP); the work goes on regardless
        pass


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """One line on stderr and the right exit code for user errors; warnings as one line too."""
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG001
        try:  # on a line of its own above a progress bar (tqdm clears and redraws the bar)
            from tqdm import tqdm

            tqdm.write(f"vidllie: warning: {message}", file=sys.stderr)
        except OSError:
            pass

    warnings.showwarning = show
    try:
        yield
    except VidllieError as err:
        say(f"vidllie: error: {err}")
        raise typer.Exit(err.exit_code) from None
    except KeyboardInterrupt:
        say("vidllie: interrupted")
        raise typer.Exit(130) from None
    finally:
        warnings.showwarning = previous


class Progress:
    """tqdm bar fed from the encode thread: fps and ETA, or a plain count when the total is unknown."""

    def __init__(self, name: str, quiet: bool) -> None:
        self.name, self.quiet, self.bar = name, quiet, None
        self.done = 0  # frames written so far (a cut stream reports it)

    def __call__(self, done: int, total: int | None) -> None:
        self.done = done
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.name, unit="frame", dynamic_ncols=True, file=sys.stderr)
        try:
            self.bar.update(done - self.bar.n)
        except OSError:  # stderr gone (closed terminal): never let the bar stop a recording
            self.quiet = True

    def close(self) -> None:
        if self.bar is not None:
            try:
                self.bar.close()
            except OSError:
                pass
            self.bar = None


def write_json(path: Path, data: dict) -> None:
    try:
        path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror}") from None
