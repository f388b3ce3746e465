"""``python -m vidllie`` = the ``vidllie`` command."""

from vidllie.cli import app

app(prog_name="vidllie")
