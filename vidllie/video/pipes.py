"""Standard input/output and other file objects as video sources and targets (PyAV custom I/O).

``"-"`` means standard input for a reader and standard output for a writer; any object with
``read`` (input) or ``write`` (output) works the same way (``io.BytesIO``, an open file, a
socket's ``makefile``). A pipe cannot seek, so the container must be named (``format=``) when it
cannot be guessed, and the output must be a format that never seeks back::

    VideoReader("-")                                                  # a container on stdin
    VideoReader("-", format="rawvideo", options=raw_video_options(640, 360, 25, "rgb24"))
    VideoWriter("-", info, format="mpegts")                           # MPEG-TS on stdout

vidllie never closes a file object it was given (the caller owns it). A path output is written to
a temp file and renamed on success; a stream cannot be taken back, so a failure part-way leaves
what was already written, cut at the failure with no trailer (Matroska, MPEG-TS and NUT readers
play it up to the cut), and the error (exit code) is the only sign: check it.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import sys
from collections.abc import Iterator
from fractions import Fraction
from typing import Any, BinaryIO

import av

from ..errors import InputError, OutputClosedError, OutputError

PIPE = "-"
DEFAULT_PIPE_FORMAT = "matroska"
# Containers that stream (no seeking back), named in the error for those that do not.
PIPE_FORMATS = ("matroska", "mpegts", "nut", "rawvideo")
# The MOV/MP4 family writes its index (moov) at the end and seeks back to fix sizes: refused by
# FFmpeg on an unseekable output ("Invalid argument"), checked on FFmpeg 8.1.
_SEEKS_BACK = frozenset({"mp4", "mov", "3gp", "3g2", "psp", "ipod", "f4v"})
RAW_PIX_FMTS = ("rgb24", "bgr24", "yuv420p")


def is_pipe(target: Any) -> bool:
    """True for ``"-"`` and file objects (anything that is not a path or URL string)."""
    if isinstance(target, (str, os.PathLike)):
        return os.fspath(target) == PIPE
    return hasattr(target, "read") or hasattr(target, "write")


def raw_video_options(width: int, height: int, rate: float | str = 25,
                      pix_fmt: str = "rgb24") -> dict[str, str]:
    """FFmpeg rawvideo demuxer options for headerless frames of one size and pixel format.

    >>> raw_video_options(640, 360, "30000/1001", "rgb24")
    {'video_size': '640x360', 'pixel_format': 'rgb24', 'framerate': '30000/1001'}
    """
    if width < 1 or height < 1:
        raise InputError(f"raw video size must be positive, got {width}x{height}")
    try:
        av.VideoFormat(pix_fmt)
    except (ValueError, av.error.FFmpegError):
        raise InputError(f"unknown pixel format {pix_fmt!r} (e.g. {', '.join(RAW_PIX_FMTS)})") from None
    try:
        if Fraction(str(rate)) <= 0:  # 25, 12.5 or 30000/1001, as FFmpeg takes them
            raise ValueError
    except (ValueError, ZeroDivisionError):
        raise InputError(f"raw video rate must be a positive number of frames/s, got {rate!r}") from None
    return {"video_size": f"{width}x{height}", "pixel_format": pix_fmt, "framerate": str(rate)}


class BorrowedFile:
    """A caller's file object as PyAV sees it.

    PyAV closes the file object of a container it closes; this wrapper turns that into a flush,
    so stdin/stdout and a caller's ``BytesIO`` stay usable. It reads with ``read1`` when there is
    one (returns what a pipe has now instead of waiting for a full buffer: live input keeps its
    latency). ``abandon()`` after a failure makes PyAV skip the trailer (it does so for a closed
    file) and drops any later bytes, so the stream ends at the failure. A closed reader on the
    far side (EPIPE) is remembered in ``reader_gone``.
    """

    def __init__(self, file: BinaryIO, name: str) -> None:
        self.file = file
        self.name = name
        self.closed = False
        self.reader_gone = False
        try:  # PyAV seeks to absolute positions: only an object at its start can seek
            can = file.seekable() if hasattr(file, "seekable") else hasattr(file, "seek")
            self._seekable = bool(can) and file.tell() == 0
        except (OSError, ValueError, AttributeError):
            self._seekable = False
        self._read = getattr(file, "read1", None) or getattr(file, "read", None)

    def seekable(self) -> bool:
        return self._seekable

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.file.seek(offset, whence)

    def tell(self) -> int:
        return self.file.tell()

    def read(self, n: int = -1) -> bytes:
        return self._read(n) if not self.closed else b""

    def write(self, data: bytes) -> int:
        if self.closed:
            return len(data)  # abandoned: nothing more goes out
        try:
            n = self.file.write(data)
            # Out now: PyAV hands over whole 32 KB buffers, so this costs nothing, a live reader
            # gets every chunk at once, and a closed reader is seen at the write that failed.
            self.flush()
        except BrokenPipeError:
            self.reader_gone = True
            self.abandon()  # one exception reaches PyAV; later writes are dropped quietly
            raise
        return len(data) if n is None else n

    def flush(self) -> None:
        if not self.closed and hasattr(self.file, "flush"):
            self.file.flush()

    def close(self) -> None:  # never close the caller's object
        with contextlib.suppress(OSError, ValueError):
            self.flush()

    def abandon(self) -> None:
        self.closed = True


def borrow_input(source: Any) -> BorrowedFile | None:
    """``"-"`` -> standard input, a readable object -> itself; None for paths and URLs."""
    if not is_pipe(source):
        return None
    if isinstance(source, (str, os.PathLike)):
        return BorrowedFile(sys.stdin.buffer, "<stdin>")
    if not hasattr(source, "read"):
        raise TypeError(f"an input file object needs a read() method, got {type(source).__name__}")
    return BorrowedFile(source, _label(source))


def check_pipe_input(file: BorrowedFile) -> None:
    """An empty standard input (or pipe) says so, in the words used for an empty file."""
    peek = getattr(file.file, "peek", None)
    if peek is not None:
        try:
            empty = not peek(1)  # waits for the first bytes of a live pipe, consumes nothing
        except (OSError, ValueError):
            return
        if empty:
            raise InputError(f"input is empty (0 bytes): {file.name}")


def pipe_mp4_error(file: BorrowedFile) -> InputError:
    """An MP4 whose index comes last cannot be decoded from a stream that cannot seek back."""
    return InputError(
        f"cannot read the MP4 on {file.name}: its index (moov) comes after the data and a pipe "
        "cannot seek back to it; pass the file name instead, or pipe matroska/mpegts/nut "
        "(or an MP4 written with -movflags +faststart or fragmented)")


def borrow_output(target: Any) -> BorrowedFile | None:
    """``"-"`` -> standard output, a writable object -> itself; None for paths."""
    if not is_pipe(target):
        return None
    if isinstance(target, (str, os.PathLike)):
        return BorrowedFile(sys.stdout.buffer, "<stdout>")
    if not hasattr(target, "write"):
        raise TypeError(f"an output file object needs a write() method, got {type(target).__name__}")
    return BorrowedFile(target, _label(target))


def _label(file: Any) -> str:
    name = getattr(file, "name", None)
    if name in ("<stdin>", "<stdout>"):
        return name
    return f"<{type(file).__name__} {name}>" if isinstance(name, str) else f"<{type(file).__name__}>"


def check_pipe_format(fmt: str, seekable: bool = False) -> None:
    """Refuse, in one line, a container that cannot be written to an unseekable output."""
    names = set(fmt.split(","))
    if not seekable and names & _SEEKS_BACK:
        raise OutputError(
            f"cannot write {fmt.split(',')[0]} to a pipe: it seeks back to write its index at the "
            f"end; use --format {', '.join(PIPE_FORMATS)} (format= in Python), or write to a file")


def muxer_for_name(name: str) -> str | None:
    """FFmpeg's own choice of muxer for a file name (by its suffix); None when it has none.

    >>> muxer_for_name("night.mkv"), muxer_for_name("/dev/null")
    ('matroska', None)
    """
    probe = io.BytesIO()
    probe.name = name
    try:
        container = av.open(probe, mode="w")
    except ValueError:
        return None
    fmt = container.format.name
    container.close()
    return fmt


def special_output_kind(path: str | os.PathLike) -> str | None:
    """What an existing output path is when it is not a regular file or folder: "character
    device", "FIFO", "block device" or "socket"; None otherwise (absent, file, folder)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    kinds = ((stat.S_ISCHR, "character device"), (stat.S_ISFIFO, "FIFO"),
             (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))
    return next((name for test, name in kinds if test(mode)), None)


class CountingWriter(io.BufferedWriter):
    """A binary writer that counts the bytes handed to it (what went out on a stream)."""

    def __init__(self, raw: io.RawIOBase) -> None:
        super().__init__(raw)
        self.bytes_written = 0

    def write(self, data) -> int:
        n = super().write(data)
        self.bytes_written += n
        return n


def open_special_output(path: str | os.PathLike, fmt: str | None = None) -> CountingWriter:
    """An existing FIFO or character device opened to be written into as a stream.

    Such a path is never replaced by a file (renaming over /dev/null would replace the
    system's /dev/null): the video goes into it, with the stream rules of ``-o -``. A FIFO
    waits here for its reader, as any writer of a FIFO does. Block devices and sockets are
    refused in one line, and so is a container that cannot stream into a FIFO (checked before
    the FIFO is opened).
    """
    kind = special_output_kind(path)
    if kind in ("block device", "socket"):
        raise OutputError(f"output {os.fspath(path)} is a {kind}: vidllie writes files, FIFOs "
                          "and character devices (or - for standard output), not a " + kind)
    if kind == "FIFO":
        check_pipe_format(fmt or muxer_for_name(os.fspath(path)) or DEFAULT_PIPE_FORMAT)
    try:
        return CountingWriter(io.FileIO(os.fspath(path), "wb"))
    except OSError as exc:
        raise OutputError(f"cannot open {os.fspath(path)} for writing: {exc.strerror}") from None


def open_output(file: BorrowedFile, fmt: str | None) -> av.container.OutputContainer:
    """An output container on a borrowed file: ``fmt``, else the muxer its name's suffix
    implies (a named FIFO or device), else Matroska."""
    fmt = fmt or muxer_for_name(file.name) or DEFAULT_PIPE_FORMAT
    check_pipe_format(fmt, file.seekable())
    try:
        return av.open(file, mode="w", format=fmt)
    except (ValueError, av.error.FFmpegError, av.ArgumentError) as exc:
        raise OutputError(f"cannot write {file.name} as {fmt!r}: {exc} "
                          f"(streaming containers: {', '.join(PIPE_FORMATS)})") from None


def write_error(file: BorrowedFile | None, text: str, detail: str) -> OutputError:
    """The error for a failed write: OutputClosedError when the reader downstream went away."""
    if file is not None and file.reader_gone:
        return OutputClosedError(f"{file.name} was closed by its reader (broken pipe)")
    return OutputError(f"{text}: {detail}")


def stdout_seekable() -> bool:
    """True when standard output is a regular file at its start (``> out.mp4``): MP4 works."""
    try:
        fd = sys.stdout.fileno()
        return stat.S_ISREG(os.fstat(fd).st_mode) and os.lseek(fd, 0, os.SEEK_CUR) == 0
    except (AttributeError, OSError, ValueError):
        return False


@contextlib.contextmanager
def stdout_for_video() -> Iterator[BinaryIO]:
    """Standard output reserved for the video stream while the block runs.

    The stream gets a private duplicate of file descriptor 1, and descriptor 1 itself points to
    stderr meanwhile: a stray ``print`` (Python) or log line (C libraries) cannot corrupt the
    video. When the reader went away (broken pipe), descriptor 1 is pointed at /dev/null so that
    Python's exit-time flush stays quiet. Without a real descriptor (a test runner's captured
    stdout) the stream is ``sys.stdout.buffer`` as is.
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        yield sys.stdout.buffer
        return
    sys.stdout.flush()
    video_fd = os.dup(fd)
    os.dup2(sys.stderr.fileno(), fd)
    stream = CountingWriter(io.FileIO(video_fd, "wb"))  # counted: a cut stream says how much went out
    stream.raw.name = "<stdout>"  # for messages (it is descriptor 1's pipe/file)
    try:
        yield stream
    finally:
        try:
            stream.flush()
            os.dup2(video_fd, fd)  # descriptor 1 back to the video's pipe/file
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            stream.close()
