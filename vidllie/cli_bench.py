"""The ``vidllie bench`` command (thin: options -> :mod:`vidllie.jobs.bench`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vidllie.cli_common import user_errors, write_json
from vidllie.pipeline.options import DEFAULTS as ENHANCE


def bench(
    input: Optional[str] = typer.Argument(None, metavar="[INPUT]", help="Video to benchmark on (or use --synthetic)."),
    synthetic: Optional[str] = typer.Option(None, "--synthetic", help="Generate a night-like WxH clip (e.g. 1280x720, 4k) instead."),
    model: str = typer.Option(ENHANCE.model, "--model", help="Checkpoint or 'default'."),
    compare: Optional[str] = typer.Option(None, "--compare", help="Also run this model (e.g. quality) with the same settings, and report the speed ratio."),
    compare_runtime: Optional[str] = typer.Option(None, "--compare-runtime", help="Runtime of the --compare run (default: --runtime's), e.g. torch."),
    dino: Optional[str] = typer.Option(ENHANCE.dino, "--dino", help="DINO backbone id/folder; 'none' runs without guidance."),
    frames: int = typer.Option(300, "--frames", min=1, help="Frames timed end to end (after the warm-up)."),
    warmup: Optional[int] = typer.Option(None, "--warmup", min=0, help="Warm-up frames (default: two batches)."),
    batch_size: int = typer.Option(ENHANCE.batch_size, "--batch-size", min=1),
    device: str = typer.Option(ENHANCE.device, "--device"),
    precision: str = typer.Option(ENHANCE.precision, "--precision", help="auto, fp32, fp16 or bf16."),
    dino_cache: str = typer.Option("on" if ENHANCE.dino_cache else "off", "--dino-cache", help="on or off."),
    temporal: float = typer.Option(ENHANCE.temporal, "--temporal", min=0.0, max=1.0),
    scene_exposure: Optional[bool] = typer.Option(ENHANCE.scene_exposure, "--scene-exposure/--no-scene-exposure", help="Exposure judged on key frames and held across a scene, near-black kept dark (default: on for the default model, off for others)."),
    reuse: Optional[bool] = typer.Option(ENHANCE.reuse, "--reuse/--no-reuse", help="Change-driven inference (recompute only changed regions; default: on the CPU, off on a GPU)."),
    chunk: Optional[int] = typer.Option(ENHANCE.chunk, "--chunk", "--tile", min=0, help="Exact chunk size in pixels (0 = never; default: automatic)."),
    codec: str = typer.Option("libx264", "--codec"),
    crf: int = typer.Option(18, "--crf"),
    preset: str = typer.Option("medium", "--preset"),
    compile: bool = typer.Option(ENHANCE.compile, "--compile"),
    runtime: str = typer.Option(ENHANCE.runtime, "--runtime", help="CPU runtime: auto, torch or openvino."),
    threads: Optional[int] = typer.Option(ENHANCE.threads, "--threads", min=1, help="CPU threads of the model (default: every CPU this process may use)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the full report as JSON here."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No table on stdout."),
    load: int = typer.Option(0, "--load", min=0, help="Measure again beside N busy processes (started and killed by bench) and report loaded/idle ratios."),
    load_sessions: str = typer.Option("each", "--load-sessions", help="The busy processes in a session each (like separate services) or all in one (like loops from one shell): with autogroup scheduling, CPU time is shared between sessions first."),
    dino_timing: bool = typer.Option(False, "--dino-timing", help="Instead: time a randomly initialised DINOv3 ViT-S/16 of the real size (timing only, never used to enhance) at 360p/720p/1080p."),
) -> None:
    """Frame-rate benchmark of the real pipeline with a per-stage breakdown."""
    with user_errors():
        from vidllie.errors import InputError
        from vidllie.jobs.bench import format_report, run_bench

        if dino_timing:
            from vidllie.jobs.bench import format_dino_timing, time_dino

            r = time_dino(device=device, threads=threads)
            if json_path is not None:
                write_json(json_path, r)
            if not quiet:
                typer.echo(format_dino_timing(r))
            return

        if dino_cache not in ("on", "off"):
            raise InputError(f"--dino-cache must be on or off, got {dino_cache!r}")
        settings = dict(
            synthetic=synthetic, dino=dino, frames=frames, warmup=warmup,
            batch_size=batch_size, device=device, precision=precision, dino_cache=dino_cache == "on",
            temporal=temporal, scene_exposure=scene_exposure, chunk=chunk, codec=codec, crf=crf, preset=preset,
            compile=compile, threads=threads, reuse=reuse, runtime=runtime, load=load, load_sessions=load_sessions,
        )
        r = run_bench(input, model=model, **settings)
        if not quiet:
            typer.echo(format_report(r))
        if compare is not None:
            from vidllie.jobs.bench import compare_reports, format_comparison

            other = run_bench(input, model=compare, **{**settings, "runtime": compare_runtime or runtime})
            r = compare_reports(r, other)
            if not quiet:
                typer.echo("\n" + format_report(other) + "\n\n" + format_comparison(r))
        if json_path is not None:
            write_json(json_path, r)
