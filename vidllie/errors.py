"""User-facing errors.

Anything a user can cause (bad input file, missing weights, unwritable output, ...) is raised as a
:class:`VidllieError` subclass with a one-line message. The CLI prints that line and exits non-zero;
library users can catch the class.
"""

from __future__ import annotations


class VidllieError(Exception):
    """A problem the user can fix; ``str(err)`` is a complete one-line explanation."""

    exit_code = 1


class InputError(VidllieError):
    """The input video cannot be opened or decoded."""

    exit_code = 2


class OutputError(VidllieError):
    """The output cannot be written."""

    exit_code = 3


class WeightsError(VidllieError):
    """Model or DINO weights are missing or invalid."""

    exit_code = 4


class DeviceError(VidllieError):
    """The requested device cannot run the job (e.g. out of memory after every fallback)."""

    exit_code = 5


class OutputClosedError(OutputError):
    """The reader of a piped output went away (``| head``: broken pipe). Not a failure of the
    input or the settings; the CLI ends quietly with 141, as a shell reports a process ended
    by SIGPIPE (128 + 13)."""

    exit_code = 141
