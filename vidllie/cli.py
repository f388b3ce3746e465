"""``vidllie`` command line (typer). Thin: parse options, call the library, report.

Every command runs its body inside :func:`user_errors`, which turns a ``VidllieError`` into one
line ``vidllie: error: ...`` on stderr and the error's exit code, and library warnings into
``vidllie: warning: ...`` lines. New commands (info, train, eval, bench) are further
``@app.command()`` functions following the same pattern.
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import typer

from vidllie import __version__
from vidllie.errors import OutputError, VidllieError
from vidllie.pipeline.options import DEFAULTS as ENHANCE

app = typer.Typer(
    name="vidllie",
    help="Video low-light enhancement: a DINO-guided Restormer with temporal smoothing.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _say(message: str) -> None:
    typer.echo(message, err=True)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """One line on stderr and the right exit code for user errors; warnings as one line too."""
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG001
        _say(f"vidllie: warning: {message}")

    warnings.showwarning = show
    try:
        yield
    except VidllieError as err:
        _say(f"vidllie: error: {err}")
        raise typer.Exit(err.exit_code) from None
    except KeyboardInterrupt:
        _say("vidllie: interrupted")
        raise typer.Exit(130) from None
    finally:
        warnings.showwarning = previous


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vidllie {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Video low-light enhancement."""


class _Progress:
    """tqdm bar fed from the encode thread: fps and ETA, or a plain count when the total is unknown."""

    def __init__(self, name: str, quiet: bool) -> None:
        self.name, self.quiet, self.bar = name, quiet, None

    def __call__(self, done: int, total: int | None) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.name, unit="frame", dynamic_ncols=True, file=sys.stderr)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@app.command()
def enhance(
    inputs: list[str] = typer.Argument(..., metavar="INPUT...", help="Video files, folders of videos, or stream URLs."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output file (one input) or folder (several). Default: <stem>_enhanced.<ext> beside each input."),
    yes: bool = typer.Option(False, "-y", "--yes", help="Overwrite existing outputs."),
    model: str = typer.Option(ENHANCE.model, "--model", help="Checkpoint (.safetensors) or 'default' (the bundled model)."),
    dino: Optional[str] = typer.Option(ENHANCE.dino, "--dino", help="DINO backbone hub id or folder for guided models; 'none' runs without guidance."),
    device: str = typer.Option(ENHANCE.device, "--device", help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option(ENHANCE.precision, "--precision", help="auto, fp32, fp16 or bf16 (auto: fp16 on CUDA, fp32 otherwise)."),
    batch_size: int = typer.Option(ENHANCE.batch_size, "--batch-size", min=1, help="Frames per model call."),
    chunk: Optional[int] = typer.Option(ENHANCE.chunk, "--chunk", "--tile", min=0, help="Exact chunk size in pixels (0 = never; default: automatic by device memory): the model runs in chunks of this size with frame-wide attention, same output as whole frames, less memory. --tile is an old name."),
    tile_overlap: int = typer.Option(ENHANCE.tile_overlap, "--tile-overlap", min=0, help="Overlap of independent feathered tiles, pixels (only the out-of-memory last resort uses them)."),
    codec: str = typer.Option("libx264", "--codec", help="Video encoder (libx264, libx265, ffv1, ...)."),
    crf: int = typer.Option(18, "--crf", help="Quality for x264/x265 (lower = better)."),
    preset: str = typer.Option("medium", "--preset", help="x264/x265 speed preset."),
    pix_fmt: Optional[str] = typer.Option(None, "--pix-fmt", help="Output pixel format (default yuv420p; yuv420p10le for 10-bit)."),
    start: Optional[str] = typer.Option(None, "--start", help="Start time: seconds or [hh:]mm:ss."),
    end: Optional[str] = typer.Option(None, "--end", help="End time: seconds or [hh:]mm:ss."),
    no_audio: bool = typer.Option(False, "--no-audio", help="Leave the audio out."),
    temporal: float = typer.Option(ENHANCE.temporal, "--temporal", min=0.0, max=1.0, help="Temporal smoothing strength, 0 = off."),
    dino_cache: bool = typer.Option(ENHANCE.dino_cache, "--dino-cache/--no-dino-cache", help="Reuse DINO features across similar frames."),
    cache_threshold: float = typer.Option(ENHANCE.cache_threshold, "--cache-threshold", min=0.0, help="Max thumbnail difference to reuse DINO features."),
    cache_max_age: int = typer.Option(ENHANCE.cache_max_age, "--cache-max-age", min=1, help="Max frames a key frame's DINO features are reused."),
    reuse: bool = typer.Option(ENHANCE.reuse, "--reuse/--no-reuse", help="Fixed cameras: recompute only the regions that changed (whole frames at cuts, every --cache-max-age frames, on light changes and camera motion)."),
    compile: bool = typer.Option(ENHANCE.compile, "--compile", help="torch.compile the model (slow start, faster on long videos)."),
    threads: Optional[int] = typer.Option(ENHANCE.threads, "--threads", min=1, help="Torch CPU threads (default: all cores; fewer on a machine shared with busy processes)."),
    stats_json: Optional[Path] = typer.Option(None, "--stats-json", help="Write per-stage timings, fps, cache hit rate, memory and versions here."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bar or summary."),
) -> None:
    """Enhance videos; audio is copied unchanged, timestamps are kept."""
    with user_errors():
        from vidllie.pipeline.enhancer import Enhancer
        from vidllie.pipeline.jobs import parse_time, plan_jobs

        jobs = plan_jobs(inputs, output)
        t0, t1 = parse_time(start), parse_time(end)
        try:
            enhancer = Enhancer(
                model, dino=dino, device=device, precision=precision, batch_size=batch_size,
                chunk=chunk, tile_overlap=tile_overlap, temporal=temporal, dino_cache=dino_cache,
                cache_threshold=cache_threshold, cache_max_age=cache_max_age, compile=compile,
                threads=threads, reuse=reuse,
            )
        except ValueError as err:
            raise typer.BadParameter(str(err)) from None
        runs, failed = [], 0
        for job in jobs:
            progress = _Progress(Path(job.src).name, quiet)
            try:
                if job.dst.exists() and not yes:
                    raise OutputError(f"{job.dst} exists; pass -y to overwrite")
                stats = enhancer.enhance_video(
                    job.src, job.dst, start=t0, end=t1, codec=codec, crf=crf, preset=preset,
                    pix_fmt=pix_fmt, audio=not no_audio, overwrite=yes, progress=progress,
                )
            except VidllieError as err:
                progress.close()
                if len(jobs) == 1:
                    raise
                _say(f"vidllie: error: {err}")
                failed = failed or err.exit_code
                continue
            progress.close()
            runs.append(stats)
            if not quiet:
                cache = stats["dino_cache"]
                hit = f", DINO cache {100 * cache['hit_rate']:.0f}% reused" if cache and cache["hit_rate"] is not None else ""
                share = stats["reuse"]["recomputed_share"] if stats["reuse"]["enabled"] else None
                hit += f", {100 * share:.0f}% of pixels recomputed" if share is not None else ""
                _say(f"{job.dst}: {stats['frames']} frames, {stats['fps']:.2f} fps{hit}")
        if stats_json is not None and runs:
            _write_json(stats_json, runs[0] if len(jobs) == 1 else {"runs": runs})
        if failed:
            raise typer.Exit(failed)


@app.command()
def info(
    model: str = typer.Argument("default", help="Checkpoint, 'default', or a variant name (tiny, small, restormer, ...)."),
    size: str = typer.Option("640x360", "--size", help="Frame size for the MACs count, WxH."),
    dino: Optional[str] = typer.Option(None, "--dino", help="DINO backbone id/folder to count its frozen parameters; 'none' skips it."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Parameters (trainable/frozen), MACs per frame, DINO backbone and injection levels."""
    with user_errors():
        from vidllie.models.info import describe, format_info
        from vidllie.pipeline.options import parse_size

        width, height = parse_size(size)
        use_dino: object = False if (dino or "").lower() == "none" else dino
        d = describe(model, height=height, width=width, dino=use_dino)
        typer.echo(json.dumps(d, indent=2, default=str) if as_json else format_info(d))


@app.command()
def bench(
    input: Optional[str] = typer.Argument(None, metavar="[INPUT]", help="Video to benchmark on (or use --synthetic)."),
    synthetic: Optional[str] = typer.Option(None, "--synthetic", help="Generate a night-like WxH clip (e.g. 1280x720, 4k) instead."),
    model: str = typer.Option(ENHANCE.model, "--model", help="Checkpoint or 'default'."),
    dino: Optional[str] = typer.Option(ENHANCE.dino, "--dino", help="DINO backbone id/folder; 'none' runs without guidance."),
    frames: int = typer.Option(300, "--frames", min=1, help="Frames timed end to end (after the warm-up)."),
    warmup: Optional[int] = typer.Option(None, "--warmup", min=0, help="Warm-up frames (default: two batches)."),
    batch_size: int = typer.Option(ENHANCE.batch_size, "--batch-size", min=1),
    device: str = typer.Option(ENHANCE.device, "--device"),
    precision: str = typer.Option(ENHANCE.precision, "--precision", help="auto, fp32, fp16 or bf16."),
    dino_cache: str = typer.Option("on" if ENHANCE.dino_cache else "off", "--dino-cache", help="on or off."),
    temporal: float = typer.Option(ENHANCE.temporal, "--temporal", min=0.0, max=1.0),
    reuse: bool = typer.Option(ENHANCE.reuse, "--reuse/--no-reuse", help="Change-driven inference (recompute only changed regions)."),
    chunk: Optional[int] = typer.Option(ENHANCE.chunk, "--chunk", "--tile", min=0, help="Exact chunk size in pixels (0 = never; default: automatic)."),
    codec: str = typer.Option("libx264", "--codec"),
    crf: int = typer.Option(18, "--crf"),
    preset: str = typer.Option("medium", "--preset"),
    compile: bool = typer.Option(ENHANCE.compile, "--compile"),
    threads: Optional[int] = typer.Option(ENHANCE.threads, "--threads", min=1, help="Torch CPU threads (default: all cores)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the full report as JSON here."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No table on stdout."),
    dino_timing: bool = typer.Option(False, "--dino-timing", help="Instead: time a randomly initialised DINOv3 ViT-S/16 of the real size (timing only, never used to enhance) at 360p/720p/1080p."),
) -> None:
    """Frame-rate benchmark of the real pipeline with a per-stage breakdown."""
    with user_errors():
        from vidllie.errors import InputError
        from vidllie.pipeline.bench import format_report, run_bench

        if dino_timing:
            from vidllie.pipeline.bench import format_dino_timing, time_dino

            r = time_dino(device=device, threads=threads)
            if json_path is not None:
                _write_json(json_path, r)
            if not quiet:
                typer.echo(format_dino_timing(r))
            return

        if dino_cache not in ("on", "off"):
            raise InputError(f"--dino-cache must be on or off, got {dino_cache!r}")
        r = run_bench(
            input, synthetic=synthetic, model=model, dino=dino, frames=frames, warmup=warmup,
            batch_size=batch_size, device=device, precision=precision, dino_cache=dino_cache == "on",
            temporal=temporal, chunk=chunk, codec=codec, crf=crf, preset=preset, compile=compile,
            threads=threads, reuse=reuse,
        )
        if json_path is not None:
            _write_json(json_path, r)
        if not quiet:
            typer.echo(format_report(r))


@app.command()
def train(
    config: Path = typer.Option(..., "--config", help="Training config YAML (see configs/train/)."),
    resume: bool = typer.Option(False, "--resume", help="Continue exactly from the run's last checkpoint."),
) -> None:
    """Train a model (checkpoints every N steps and on Ctrl-C; exact resume)."""
    with user_errors():
        from vidllie.train.trainer import train as run_training

        summary = run_training(config, resume=resume)
        typer.echo(json.dumps(summary, indent=2, default=str))


@app.command("eval")
def evaluate(
    data: Path = typer.Argument(..., help="Paired folder with low/ and high/ (matched by file name)."),
    model: str = typer.Option("default", "--model", help="Checkpoint or 'default'."),
    dino: Optional[str] = typer.Option(None, "--dino", help="DINO backbone for guided models ('none' = unguided)."),
    device: str = typer.Option("cpu", "--device"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Score only the first N pairs."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write per-image and mean scores here."),
) -> None:
    """PSNR/SSIM (plain and GT-mean) of a model and the gamma/CLAHE baselines on a paired folder."""
    with user_errors():
        from vidllie.train.evaluate import evaluate as run_eval
        from vidllie.train.evaluate import format_table

        results = run_eval(model, data, device=device, dino=dino, limit=limit, json_path=json_path)
        typer.echo(format_table(results))


def _write_json(path: Path, data: dict) -> None:
    try:
        path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror}") from None


if __name__ == "__main__":
    app()
