"""``vidllie`` command line (typer). Thin: parse options, call the library, report.

This module makes the app and registers the commands, one module each: ``enhance``
(:mod:`vidllie.cli_enhance`), ``preview`` (:mod:`vidllie.cli_preview`), ``bench``
(:mod:`vidllie.cli_bench`), ``info``, ``train`` and ``eval`` (:mod:`vidllie.cli_model`). Every
command runs its body inside :func:`~vidllie.cli_common.user_errors`, which turns a
``VidllieError`` into one line ``vidllie: error: ...`` on stderr and the error's exit code, and
library warnings into ``vidllie: warning: ...`` lines.
"""

from __future__ import annotations

import sys

import typer
from typer.core import TyperGroup

try:  # typer >= 0.20 carries its own click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
    from typer.exceptions import Abort
except ImportError:
    from click.exceptions import Abort, ClickException, NoArgsIsHelpError

from vidllie import __version__
from vidllie.cli_bench import bench
from vidllie.cli_common import say as _say
from vidllie.cli_enhance import enhance
from vidllie.cli_model import evaluate, info, train
from vidllie.cli_preview import preview


class _OneLineErrors(TyperGroup):
    """Usage errors (a bad option value, a missing argument) as the one line every other error
    gets, with exit code 2, instead of click's usage box."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except NoArgsIsHelpError as err:
            err.show()  # `vidllie` alone: the help
            sys.exit(0)
        except ClickException as err:
            _say(f"vidllie: error: {err.format_message()}")
            sys.exit(err.exit_code)
        except Abort:
            _say("vidllie: interrupted")
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=_OneLineErrors,
    name="vidllie",
    help="Video low-light enhancement: a DINO-guided Restormer with temporal smoothing.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vidllie {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Video low-light enhancement."""


app.command()(enhance)
app.command()(info)
app.command()(bench)
app.command()(train)
app.command("eval")(evaluate)
app.command()(preview)

if __name__ == "__main__":
    app()
