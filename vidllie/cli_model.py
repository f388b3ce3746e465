"""The model commands: ``vidllie info`` (a model's size and cost, or a video's stream),
``vidllie train`` and ``vidllie eval`` (thin: options -> :mod:`vidllie.models.info`,
:mod:`vidllie.train`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from vidllie.cli_common import user_errors


def info(
    model: str = typer.Argument("default", help="Checkpoint, 'default', or a variant name (tiny, small, restormer, ...); or a video file (its stream, HDR or not, and what enhance does with it)."),
    size: str = typer.Option("640x360", "--size", help="Frame size for the MACs count, WxH."),
    dino: Optional[str] = typer.Option(None, "--dino", help="DINO backbone id/folder to count its frozen parameters; 'none' skips it."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Parameters (trainable/frozen), MACs per frame, DINO backbone and injection levels; for a
    video file: its stream, and whether it is HDR and what enhance does with it."""
    with user_errors():
        from vidllie.models.info import describe, format_info
        from vidllie.jobs.plan import VIDEO_SUFFIXES
        from vidllie.pipeline.options import parse_size

        if Path(model).suffix.lower() in VIDEO_SUFFIXES:
            from vidllie.pipeline.hdr import describe_video

            d = describe_video(model)
            typer.echo(json.dumps(d, indent=2) if as_json else "\n".join(
                f"{k:<14}{json.dumps(v) if isinstance(v, dict) else v}" for k, v in d.items()))
            return

        width, height = parse_size(size)
        use_dino: object = False if (dino or "").lower() == "none" else dino
        d = describe(model, height=height, width=width, dino=use_dino)
        typer.echo(json.dumps(d, indent=2, default=str) if as_json else format_info(d))


def train(
    config: Path = typer.Option(..., "--config", help="Training config YAML (see configs/train/)."),
    resume: bool = typer.Option(False, "--resume", help="Continue exactly from the run's last checkpoint."),
) -> None:
    """Train a model (checkpoints every N steps and on Ctrl-C; exact resume)."""
    with user_errors():
        from vidllie.train.trainer import train as run_training

        summary = run_training(config, resume=resume)
        typer.echo(json.dumps(summary, indent=2, default=str))


def evaluate(
    data: Path = typer.Argument(..., help="Paired folder with low/ and high/ (matched by file name)."),
    model: str = typer.Option("default", "--model", help="Checkpoint or 'default'."),
    dino: Optional[str] = typer.Option(None, "--dino", help="DINO backbone for guided models ('none' = unguided)."),
    device: str = typer.Option("cpu", "--device"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Score only the first N pairs."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write per-image and mean scores here."),
    scene_exposure: Optional[bool] = typer.Option(None, "--scene-exposure/--no-scene-exposure", help="The scene-exposure stage on each image (default: as enhance, on for the default model)."),
) -> None:
    """PSNR/SSIM (plain and GT-mean) of a model and the gamma/CLAHE baselines on a paired folder."""
    with user_errors():
        from vidllie.train.evaluate import evaluate as run_eval
        from vidllie.train.evaluate import format_table

        results = run_eval(model, data, device=device, dino=dino, scene_exposure=scene_exposure, limit=limit,
                           json_path=json_path)
        typer.echo(format_table(results))
