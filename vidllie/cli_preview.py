"""The ``vidllie preview`` command (thin: options -> :func:`vidllie.jobs.preview.preview`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vidllie.cli_common import Progress, user_errors
from vidllie.pipeline.options import DEFAULTS as ENHANCE


def preview(
    input: str = typer.Argument(..., metavar="INPUT", help="Video file."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Contact sheet PNG. Default: <stem>_preview.png beside the input."),
    at: Optional[str] = typer.Option(None, "--at", help="Moments, comma-separated: seconds or [hh:]mm:ss (e.g. 0:10,1:30). Default: --moments spread over the video."),
    moments: int = typer.Option(4, "--moments", min=1, help="How many moments to spread over the video (without --at)."),
    frames: int = typer.Option(8, "--frames", min=1, help="Frames enhanced at each moment, so the temporal stage settles; the last is shown."),
    model: list[str] = typer.Option([ENHANCE.model], "--model", help="Checkpoint or bundled model (default, quality, fast); repeat it for one column per model."),
    clip: Optional[Path] = typer.Option(None, "--clip", help="Also write a split-screen video of the moments (input left, first model right)."),
    width: int = typer.Option(480, "--width", min=16, help="Width of each picture in the sheet, pixels."),
    start: Optional[str] = typer.Option(None, "--start", help="Spread the moments from here: seconds or [hh:]mm:ss."),
    end: Optional[str] = typer.Option(None, "--end", help="... up to here."),
    dino: Optional[str] = typer.Option(ENHANCE.dino, "--dino", help="DINO backbone hub id or folder for guided models; 'none' runs without guidance."),
    device: str = typer.Option(ENHANCE.device, "--device", help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option(ENHANCE.precision, "--precision", help="auto, fp32, fp16 or bf16."),
    batch_size: int = typer.Option(ENHANCE.batch_size, "--batch-size", min=1, help="Frames per model call."),
    chunk: Optional[int] = typer.Option(ENHANCE.chunk, "--chunk", min=0, help="Exact chunk size in pixels (0 = never; default: automatic)."),
    temporal: float = typer.Option(ENHANCE.temporal, "--temporal", min=0.0, max=1.0, help="Temporal smoothing strength, 0 = off."),
    reuse: Optional[bool] = typer.Option(ENHANCE.reuse, "--reuse/--no-reuse", help="Recompute only the regions that changed (default: on the CPU, off on a GPU)."),
    runtime: str = typer.Option(ENHANCE.runtime, "--runtime", help="CPU runtime: auto, torch or openvino."),
    threads: Optional[int] = typer.Option(ENHANCE.threads, "--threads", min=1, help="CPU threads of the model."),
    video_stream: Optional[int] = typer.Option(None, "--video-stream", min=0, metavar="N", help="Preview video stream N of the input (as enhance --video-stream). Default: the first."),
    yes: bool = typer.Option(False, "-y", "--yes", help="Overwrite existing outputs."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bar."),
) -> None:
    """Enhance a few moments and write a before/after contact sheet, with an estimate of the full run's time."""
    with user_errors():
        from vidllie.jobs.preview import format_time
        from vidllie.jobs.preview import preview as run_preview

        sheet = output or Path(input).with_name(f"{Path(input).stem}_preview.png")
        bar = Progress(Path(input).name, quiet)
        try:
            r = run_preview(
                input, sheet, models=model, at=at, moments=moments, frames=frames, start=start, end=end,
                clip=clip, overwrite=yes, width=width, progress=bar, dino=dino, device=device,
                precision=precision, batch_size=batch_size, chunk=chunk, temporal=temporal, reuse=reuse,
                runtime=runtime, threads=threads, video_stream=video_stream,
            )
        except ValueError as err:
            raise typer.BadParameter(str(err)) from None
        finally:
            bar.close()
        full = r["full_run"]
        typer.echo(f"{r['output']}: {len(r['moments'])} moments x {len(r['models'])} model(s) in {r['seconds']:.1f} s")
        if r["clip"] is not None:
            typer.echo(f"{r['clip']}: split-screen clip, input left, {r['models'][0]} right")
        for name, seconds in full["seconds"].items():
            per = full["per_frame_seconds"][name]
            typer.echo(f"full run with {name}: ~{format_time(seconds)[:-3]} for {full['frames']} frames "
                       f"({1000 * per:.0f} ms per frame measured here)")
