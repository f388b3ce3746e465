"""Which files to enhance into which outputs: the inputs of ``vidllie enhance`` (files, folders,
URLs, ``-``) and their outputs, and the parsing of its times.

    plan_jobs(["night.mp4"], None)          # [Job(src='night.mp4', dst='night_enhanced.mp4')]
    plan_jobs(["clips/"], "out/")           # every video in clips/ -> out/<stem>_enhanced.<ext>
    plan_jobs(["-"], "-")                   # standard input -> standard output
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from vidllie.errors import InputError, OutputError

VIDEO_SUFFIXES = frozenset(
    ".mp4 .m4v .mov .mkv .webm .avi .ts .mts .m2ts .mpg .mpeg .flv .wmv .3gp .ogv".split()
)
SUFFIX = "_enhanced"
PIPE = "-"  # standard input as INPUT, standard output as -o
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


@dataclass(frozen=True)
class Job:
    src: str
    dst: Path


def is_url(source: str) -> bool:
    return bool(_URL.match(source)) and not source.startswith("file://")


def default_output(src: str) -> Path:
    """``dir/clip.mp4`` -> ``dir/clip_enhanced.mp4`` (beside the input). An input that is not a
    video container by name (an animated ``.gif``, a raw ``.h264`` stream, a recorder's own
    format) gets ``.mkv``, which holds the encoded video and any audio unchanged.

    Example:
        >>> default_output("cams/night.mov").as_posix(), default_output("anim.gif").as_posix()
        ('cams/night_enhanced.mov', 'anim_enhanced.mkv')
    """
    path = Path(src)
    suffix = path.suffix if path.suffix.lower() in VIDEO_SUFFIXES else ".mkv" if path.suffix else ".mp4"
    return path.with_name(f"{path.stem}{SUFFIX}{suffix}")


def videos_in(folder: Path) -> list[Path]:
    """Video files directly in ``folder`` (by suffix, sorted), without our own outputs."""
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES and not p.stem.endswith(SUFFIX)
        and not p.name.startswith(".")
    )


def plan_jobs(inputs: list[str], output: str | os.PathLike | None = None) -> list[Job]:
    """Expand inputs (files, folders, URLs) and choose each output path.

    One input file: ``output`` is the output file (or an existing folder to write into).
    Several inputs or a folder: ``output`` is a folder (created if missing). Without ``output``
    each result goes beside its input as ``<stem>_enhanced.<ext>``. ``-`` is standard input
    (the only input) or, as ``output``, standard output (for one input).
    """
    if not inputs:
        raise InputError("no input given")
    pipe_jobs = _plan_pipe(inputs, output)
    if pipe_jobs is not None:
        return pipe_jobs
    sources: list[str] = []
    for item in inputs:
        if is_url(item):
            sources.append(item)
            continue
        path = Path(item).expanduser()
        if path.is_dir():
            found = videos_in(path)
            if not found:
                raise InputError(f"no video files in folder {path} (looked for {', '.join(sorted(VIDEO_SUFFIXES))})")
            sources.extend(str(p) for p in found)
        else:
            sources.append(str(path))  # missing/bad files are reported by the reader, per job
    many = len(sources) > 1 or any(Path(i).expanduser().is_dir() for i in inputs if not is_url(i))
    out = Path(output).expanduser() if output is not None else None
    if out is not None and many:
        if out.exists() and not out.is_dir():
            raise OutputError(f"-o {out}: with several inputs the output must be a folder")
        if not out.exists() and out.suffix.lower() in VIDEO_SUFFIXES:
            raise OutputError(f"-o {out}: with several inputs the output must be a folder, not a video file name")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"cannot create output folder {out}: {err.strerror}") from None
    jobs = []
    for src in sources:
        if out is None:
            if is_url(src):
                raise OutputError(f"give an output file with -o for the stream {src}")
            dst = default_output(src)
        elif many or out.is_dir():
            name = default_output(src).name if not is_url(src) else "stream_enhanced.mp4"
            dst = out / name
        else:
            dst = out
        jobs.append(Job(src, dst))
    dsts = [j.dst.resolve() for j in jobs]
    if len(set(dsts)) != len(dsts):
        raise OutputError("two inputs would be written to the same output file; use separate folders")
    return jobs


def is_pipe(item: str | os.PathLike | None) -> bool:
    return item is not None and os.fspath(item) == PIPE


def _plan_pipe(inputs: list[str], output: str | os.PathLike | None) -> list[Job] | None:
    """The job when standard input or output is involved, else None."""
    if not (any(is_pipe(i) for i in inputs) or is_pipe(output)):
        return None
    if len(inputs) > 1:
        if any(is_pipe(i) for i in inputs):
            raise InputError("'-' (standard input) must be the only input")
        raise OutputError("-o - (standard output) takes one input")
    src = inputs[0]
    if is_pipe(src) and output is None:
        raise OutputError("reading standard input: give the output with -o FILE, or -o - for standard output")
    if not is_pipe(src) and not is_url(src) and Path(src).expanduser().is_dir():
        raise OutputError(f"-o - (standard output) takes one input file, not the folder {src}")
    if is_pipe(output):
        return [Job(src if is_pipe(src) or is_url(src) else str(Path(src).expanduser()), Path(PIPE))]
    # Standard input to a file or folder.
    out = Path(output).expanduser()
    return [Job(PIPE, out / "stdin_enhanced.mkv" if out.is_dir() else out)]


_CLOCK = re.compile(r"^(?:(\d+):)?(\d+):(\d+(?:\.\d*)?)$")


def parse_time(text: str | None) -> float | None:
    """Seconds from ``12.5``, ``1:02.5`` or ``1:00:02``; None stays None.

    >>> parse_time("1:02.5")
    62.5
    """
    if text is None or str(text).strip() == "":
        return None
    text = str(text).strip()
    try:
        value = float(text)
    except ValueError:
        m = _CLOCK.match(text)
        if not m:
            raise InputError(f"cannot read time {text!r}: use seconds (12.5) or [hh:]mm:ss(.ms)") from None
        h, mnt, sec = m.groups()
        value = int(h or 0) * 3600 + int(mnt) * 60 + float(sec)
    if value < 0 or value != value:
        raise InputError(f"time must be >= 0 seconds, got {text!r}")
    return value


def check_output_file(path: str | os.PathLike, what: str) -> Path:
    """Fail now, before a long run, if ``path`` cannot be written later (``what`` names it).

    >>> check_output_file("/no/such/folder/stats.json", "--stats-json")  # doctest: +SKIP
    OutputError: --stats-json /no/such/folder/stats.json: folder /no/such/folder does not exist
    """
    p = Path(path).expanduser()
    if p.is_dir():
        raise OutputError(f"{what} {p}: is a folder, give a file name")
    parent = p.parent
    if not parent.is_dir():
        raise OutputError(f"{what} {p}: folder {parent} does not exist")
    if p.exists() and not os.access(p, os.W_OK):
        raise OutputError(f"{what} {p}: file is not writable")
    if not p.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {p}: folder {parent} is not writable")
    return p
