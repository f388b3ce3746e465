"""``vidllie preview`` and ``vidllie.preview``: moments spread or chosen, labels and figures, model
columns, the split-screen clip, seeking (not decoding the whole file), one-line errors for bad
times. Small generated clips and the micro / bundled ``fast`` models keep it fast."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from media import flat, make_clip, make_two_camera_clip
from vidllie.cli import app
from vidllie.jobs.preview import format_time, moment_times, preview
from vidllie.jobs.sheet import BAND, GAP
from vidllie.video import VideoReader

QUICK = dict(device="cpu", runtime="torch", threads=1)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """3 s at 30 frames/s, a keyframe every 15 frames."""
    return make_clip(tmp_path_factory.mktemp("preview") / "clip.mp4", frames=90, keyint=15)


@pytest.fixture(scope="module")
def dark_clip(tmp_path_factory):
    """A flat dark clip: the enhanced half of a split screen is clearly brighter."""
    return make_clip(tmp_path_factory.mktemp("preview") / "dark.mp4", frames=60, keyint=15,
                     frame_fn=flat((12, 10, 9), 160, 96))


def test_moments_spread_labels_and_figures(clip, micro_path, tmp_path):
    r = preview(clip, tmp_path / "sheet.png", models=[micro_path], frames=4, **QUICK)
    moments = r["moments"]
    assert [m["requested"] for m in moments] == pytest.approx(moment_times(0.0, 3.0, 4))
    for m in moments:
        assert m["frames"] == 4
        assert abs(m["time"] - m["requested"]) <= 0.5 / 30 + 1e-6  # the frame shown is at the moment
    # Labels: time, input/model name and mean luma of the shown frames, as returned.
    for m, row in zip(moments, r["labels"]):
        stamp = format_time(m["time"])
        assert row == [f"{stamp}  input  luma {m['luma_in']:.1f}",
                       f"{stamp}  micro  luma {m['luma_out']['micro']:.1f}"]
    assert moments[0]["luma_in"] == pytest.approx(_luma(_frame_at(clip, moments[0]["time"])), abs=0.05)
    # One row per moment, input + one model as columns; the PNG holds the same picture.
    h = round(96 * 160 / 160)
    assert r["sheet"].shape == (BAND + 4 * (BAND + h + GAP), 2 * 160 + 3 * GAP, 3)
    assert np.array_equal(np.asarray(Image.open(r["output"])), r["sheet"])
    assert r["full_run"]["frames"] == 90
    assert r["full_run"]["seconds"]["micro"] == pytest.approx(90 * r["full_run"]["per_frame_seconds"]["micro"])


def test_chosen_moments_models_as_columns_and_cli_report(clip, micro_path, tmp_path):
    sheet = tmp_path / "sheet.png"
    result = CliRunner().invoke(app, [
        "preview", str(clip), "-o", str(sheet), "--at", "0:01,2.5", "--frames", "3",
        "--model", str(micro_path), "--model", "fast", "--width", "80", "-q",
        "--device", "cpu", "--runtime", "torch", "--threads", "1",
    ])
    assert result.exit_code == 0, result.output
    image = np.asarray(Image.open(sheet))
    assert image.shape == (BAND + 2 * (BAND + 48 + GAP), 3 * 80 + 4 * GAP, 3)  # 2 moments x (input + 2 models)
    out = result.stdout
    assert f"{sheet}: 2 moments x 2 model(s) in " in out
    assert "full run with micro: ~" in out and "full run with fast: ~" in out and "for 90 frames" in out
    # The API with the same moments: the shown frames are the ones at 1 s and 2.5 s.
    r = preview(clip, models=[micro_path, "fast"], at="0:01,2.5", frames=3, **QUICK)
    assert [round(m["time"], 3) for m in r["moments"]] == [1.0, 2.5]
    assert all(set(m["luma_out"]) == {"micro", "fast"} for m in r["moments"])
    assert [row[2].split("  ")[1] for row in r["labels"]] == ["fast", "fast"]


def test_clip_is_split_screen_of_every_run(dark_clip, tmp_path):
    video = tmp_path / "split.mp4"
    r = preview(dark_clip, models=["fast"], moments=2, frames=3, clip=video, **QUICK)
    with VideoReader(video) as reader:
        frames = [f.image.astype(float) for f in reader]
    assert len(frames) == 2 * 3  # every frame of every moment's run
    last = frames[-1]
    w = last.shape[1]
    left, right = last[:, : w // 2 - 2], last[:, w // 2 + 2 :]
    assert last[:, w // 2 - 1 : w // 2 + 1].mean() > 240  # the divider
    assert abs(left.mean() - 10.5) < 3  # input on the left
    assert abs(right.mean() - r["moments"][-1]["luma_out"]["fast"]) < 4  # output on the right
    assert right.mean() > left.mean() + 5


def test_seeks_instead_of_decoding_the_whole_file(micro_path, tmp_path):
    long = make_clip(tmp_path / "long.mp4", width=64, height=48, frames=900, keyint=30, audio_streams=0)
    r = preview(long, models=[micro_path], frames=3, **QUICK)
    assert len(r["moments"]) == 4
    # Each run decodes from the keyframe before it (at most 30 + 3 frames), plus the first frame.
    assert r["frames_decoded"] <= 4 * (30 + 3) + 1 < 900 // 5


@pytest.mark.parametrize("args, message", [
    (["--at", "0:05"], "--at 0:05.00 is beyond the end of clip.mp4 (0:03.00)"),
    (["--at", "1:x"], "--at: cannot read time '1:x': use seconds (12.5) or [hh:]mm:ss(.ms)"),
    (["--at=-1"], "--at: time must be >= 0 seconds, got '-1'"),
    (["--at", "1,,2"], "--at: an empty time in '1,,2': give times like 0:10,1:30"),
    (["--start", "4"], "--start 0:04.00 is at or beyond the end of clip.mp4 (0:03.00)"),
    (["--start", "2", "--at", "1"], "--at 0:01.00 is before --start (0:02.00)"),
])
def test_bad_times_are_one_line_exit_2(clip, micro_path, tmp_path, args, message):
    sheet = tmp_path / "sheet.png"
    result = CliRunner().invoke(app, ["preview", str(clip), "-o", str(sheet), "--model", str(micro_path), "-q", *args])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"vidllie: error: {message}"]
    assert not sheet.exists() and list(tmp_path.iterdir()) == []


def _frame_at(path, t):
    with VideoReader(path) as reader:
        return next(f.image for f in reader if abs(f.time - t) < 1e-3)


def _luma(image):
    return float((image.astype(np.float64) @ np.array([0.2126, 0.7152, 0.0722])).mean())


def test_video_stream_previews_the_rear_camera(micro_path, tmp_path):
    """--video-stream reaches preview too: the rear camera's frames (48x24, grey 90 + i) are shown."""
    src = make_two_camera_clip(tmp_path / "dual.mkv")
    rear = preview(src, None, models=[micro_path], moments=1, frames=2, width=96, video_stream=1, **QUICK)
    front = preview(src, None, models=[micro_path], moments=1, frames=2, width=96, **QUICK)
    # 96 wide: the rear camera's 2:1 picture is 48 high, the front camera's 4:3 one 72
    assert front["sheet"].shape[0] - rear["sheet"].shape[0] == 72 - 48
    assert 90 <= rear["moments"][0]["luma_in"] <= 96 and front["moments"][0]["luma_in"] < 40
