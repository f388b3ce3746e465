"""Video I/O: identity round trips keep frames, timestamps, audio bytes, rotation and colour;
bad input gives one clear error and leaves no file."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import av
import numpy as np
import pytest

from media import (audio_packets, flat, make_audio_only, make_clip, make_two_camera_clip, video_packet_times,
                   video_times, with_subtitles)
from vidllie.errors import InputError, OutputError
from vidllie.video import Frame, VideoReader, VideoWarning, VideoWriter, transcode

FAST = {"preset": "ultrafast"}  # encoder speed only; every property checked is preset-independent


# ---------------------------------------------------------------- helpers (plain PyAV, no vidllie)
def video_props(path: Path) -> dict:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        first = next(c.decode(v))
        cc = v.codec_context
        return {"rotation": int(first.rotation), "colorspace": cc.colorspace,
                "primaries": cc.color_primaries, "trc": cc.color_trc, "range": cc.color_range,
                "pix_fmt": cc.pix_fmt, "size": (cc.width, cc.height), "audio": len(c.streams.audio),
                "audio_codecs": [a.codec_context.name for a in c.streams.audio]}


def only_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------- the input matrix
MATRIX = {
    "mp4_cfr_aac": dict(suffix=".mp4"),
    "mkv_vfr": dict(suffix=".mkv", vfr=True),
    "rotation90": dict(suffix=".mp4", rotation=90),
    "10bit": dict(suffix=".mp4", pix_fmt="yuv420p10le"),
    "odd_853x479": dict(suffix=".mp4", width=853, height=479, pix_fmt="yuv444p", frames=6),
    "bframes": dict(suffix=".mp4", bframes=2),
    "no_audio": dict(suffix=".mp4", audio_streams=0),
    "two_audio": dict(suffix=".mp4", audio_streams=2),
    "one_frame": dict(suffix=".mp4", frames=1),
    "mkv_bframes_vfr": dict(suffix=".mkv", vfr=True, bframes=2),
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("matrix")
    out = {}
    for name, kw in MATRIX.items():
        kw = dict(kw)
        suffix = kw.pop("suffix")
        out[name] = make_clip(d / f"{name}{suffix}", **kw)
    return out


@pytest.mark.parametrize("name", list(MATRIX))
def test_identity_round_trip(name, clips, tmp_path):
    src = clips[name]
    dst = tmp_path / f"out{src.suffix}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VideoWarning)  # odd size -> 4:4:4 note
        stats = transcode(src, dst, **FAST)
    spec = MATRIX[name]

    a_in, a_out = audio_packets(src), audio_packets(dst)
    assert len(a_in) == spec.get("audio_streams", 1) == len(a_out)
    for pin, pout in zip(a_in, a_out):
        assert len(pin) == len(pout) and len(pin) > 0
        assert pin == pout  # byte-identical, same count

    t_in, t_out = video_times(src), video_times(dst)
    assert len(t_in) == spec.get("frames", 30) == len(t_out) == stats["frames"]
    assert t_out == pytest.approx(t_in, abs=1e-9)  # same container kind: exact times

    props = video_props(dst)
    assert props["rotation"] == spec.get("rotation", 0)
    assert (props["colorspace"], props["primaries"], props["trc"], props["range"]) == (1, 1, 1, 1)
    assert props["size"] == (spec.get("width", 160), spec.get("height", 96))


def test_vfr_is_detected_and_stays_vfr(clips, tmp_path):
    src = clips["mkv_vfr"]
    with VideoReader(src) as r:
        assert r.info.vfr is True
        assert r.info.frame_count is None  # MKV gives no count: None, never a crash
        assert r.info.estimated_frames and r.info.estimated_frames > 0
        times = [f.time for f in r]
    steps = np.round(np.diff(times), 3)
    assert len(set(steps)) > 2  # genuinely variable
    dst = transcode(src, tmp_path / "vfr.mp4", **FAST) and tmp_path / "vfr.mp4"
    assert video_times(dst) == pytest.approx(times, abs=1e-9)


def test_reader_info_and_frames(clips):
    with VideoReader(clips["mp4_cfr_aac"]) as r:
        i = r.info
        assert (i.width, i.height, i.fps, i.vfr, i.frame_count) == (160, 96, 30, False, 30)
        assert i.time_base and i.codec == "h264" and i.bit_depth == 8 and i.hdr is None
        assert [(a.kind, a.codec, a.channels, a.sample_rate) for a in i.audio] == [
            ("audio", "aac", 2, 48000)]
        frames = list(r)
    assert [f.index for f in frames] == list(range(30))
    f = frames[3]
    assert f.image.shape == (96, 160, 3) and f.image.dtype == np.uint8
    assert f.time == pytest.approx(float(f.pts * f.time_base)) == pytest.approx(3 / 30)

    with VideoReader(clips["10bit"]) as r:
        assert r.info.bit_depth == 10 and r.info.pix_fmt == "yuv420p10le"
        img = next(iter(r)).image
    assert img.dtype == np.uint16 and img.max() > 255  # 0..65535 scale
    with VideoReader(clips["rotation90"]) as r:
        assert r.info.rotation == 90
        assert next(iter(r)).image.shape == (96, 160, 3)  # pixels as stored, not rotated


def test_stream_keeps_demux_order_and_all_packets(clips):
    src = clips["two_audio"]
    with VideoReader(src) as r:
        items = list(r.stream())
    packets = [x for x in items if not isinstance(x, Frame)]
    assert sum(isinstance(x, Frame) for x in items) == 30
    by_stream: dict[int, list[bytes]] = {}
    for p in packets:
        by_stream.setdefault(p.stream_index, []).append(bytes(p.packet))
    assert list(by_stream.values()) == audio_packets(src)
    # audio is interleaved with the frames, not all at the end (a muxing thread can keep up)
    first_frame = next(i for i, x in enumerate(items) if isinstance(x, Frame))
    assert first_frame < len(items) // 2


def test_ten_bit_output_on_request(clips, tmp_path):
    dst = tmp_path / "ten.mkv"
    transcode(clips["10bit"], dst, pix_fmt="yuv420p10le", **FAST)
    assert video_props(dst)["pix_fmt"] == "yuv420p10le"
    with VideoReader(clips["10bit"]) as a, VideoReader(dst) as b:
        x, y = next(iter(a)).image, next(iter(b)).image
    assert x.dtype == y.dtype == np.uint16
    assert np.abs(x.astype(int) - y.astype(int)).mean() < 3 * 257  # within 3/255 on average through a lossy encode


def test_cross_container_keeps_sync(clips, tmp_path):
    # MKV cannot store the AAC priming packet's negative time: the muxer shifts every stream by
    # the same amount, and rounds to 1 ms. Relative frame times must survive.
    src = clips["bframes"]
    dst = tmp_path / "x.mkv"
    transcode(src, dst, **FAST)
    t_in, t_out = np.array(video_times(src)), np.array(video_times(dst))
    assert len(t_in) == len(t_out)
    shift = t_out[0] - t_in[0]
    assert abs(shift) < 0.05
    assert np.abs((t_out - shift) - t_in).max() <= 0.001
    assert audio_packets(src) == audio_packets(dst)


# ---------------------------------------------------------------- colour
@pytest.mark.parametrize("kw", [
    dict(width=1280, height=720, colour="bt709", tag_colour=True),
    dict(width=1280, height=720, colour="bt709", tag_colour=False),  # untagged HD = BT.709
    dict(width=320, height=240, colour="bt601", tag_colour=False),   # untagged SD = BT.601
    dict(width=1280, height=720, colour="bt709", tag_colour=True, color_range="pc"),
], ids=["hd_tagged", "hd_untagged", "sd_untagged", "hd_full_range"])
@pytest.mark.parametrize("rgb", [(250, 90, 40), (30, 200, 120)])
def test_flat_patch_colour_round_trip(kw, rgb, tmp_path):
    w, h = kw["width"], kw["height"]
    src = make_clip(tmp_path / "flat.mp4", frames=2, audio_streams=0, frame_fn=flat(rgb, w, h),
                    **kw)
    with VideoReader(src) as r:
        read = next(iter(r)).image.astype(int)
    assert np.abs(read - np.array(rgb)).max() <= 3
    dst = tmp_path / "flat_out.mp4"
    transcode(src, dst, **FAST)
    with VideoReader(dst) as r:
        back = next(iter(r)).image.astype(int)
        assert r.info.matrix == "bt709" and r.info.colorspace == 1
    assert np.abs(back - np.array(rgb)).max() <= 3


def test_untagged_hd_is_not_read_as_bt601(tmp_path):
    # The same YUV read with the wrong matrix is far off: proves the HD rule is applied.
    rgb = (250, 90, 40)
    src = make_clip(tmp_path / "u.mp4", width=1280, height=720, frames=1, audio_streams=0,
                    tag_colour=False, frame_fn=flat(rgb, 1280, 720))
    with av.open(str(src)) as c:
        f = next(c.decode(video=0))
        wrong = f.to_ndarray(format="rgb24", src_colorspace="itu601").astype(int)
    assert np.abs(wrong - np.array(rgb)).max() > 6


# ---------------------------------------------------------------- trimming
def test_trim_selects_exact_frames_and_audio(tmp_path):
    src = make_clip(tmp_path / "long.mp4", frames=90, keyint=15, bframes=2)
    with VideoReader(src, start=1.0, end=2.0) as r:
        assert r.info.frame_count is None and r.info.duration == pytest.approx(1.0)
        items = list(r.stream())
    frames = [x for x in items if isinstance(x, Frame)]
    assert [round(f.time * 30) for f in frames] == list(range(30, 60))
    got = [bytes(x.packet) for x in items if not isinstance(x, Frame)]
    with av.open(str(src)) as c:
        a = c.streams.audio[0]
        want = [bytes(p) for p in c.demux(a) if p.size and 1.0 <= float(p.pts * a.time_base) < 2.0]
    assert got == want

    dst = tmp_path / "trim.mp4"
    transcode(src, dst, start=1.0, end=2.0, **FAST)
    t = video_times(dst)
    assert len(t) == 30 and t[0] == pytest.approx(0.0, abs=1e-6)  # rebased to 0
    assert t[-1] == pytest.approx(29 / 30, abs=1e-6)
    assert audio_packets(dst) == [want]


def test_trim_outside_the_video_is_an_input_error(clips):
    with pytest.raises(InputError, match="no video frames"):
        VideoReader(clips["mp4_cfr_aac"], start=5.0)
    with pytest.raises(InputError):
        VideoReader(clips["mp4_cfr_aac"], start=1.0, end=0.5)


# ---------------------------------------------------------------- audio choices
def test_refused_audio_codec_is_reencoded_to_aac_with_warning(tmp_path):
    src = make_clip(tmp_path / "pcm.mkv", audio_codec="pcm_s16le")
    dst = tmp_path / "pcm.mp4"
    with pytest.warns(VideoWarning, match="re-encoding .* to AAC"):
        transcode(src, dst, **FAST)
    props = video_props(dst)
    assert props["audio_codecs"] == ["aac"]
    with av.open(str(dst)) as c:
        samples = sum(f.samples for f in c.decode(audio=0))
    assert samples >= 0.95 * 48000  # the whole second of sound is there
    # .mkv keeps the PCM bytes unchanged
    transcode(src, tmp_path / "pcm_copy.mkv", **FAST)
    assert audio_packets(tmp_path / "pcm_copy.mkv") == audio_packets(src)


def test_audio_false_drops_audio_on_purpose(clips, tmp_path):
    dst = tmp_path / "mute.mp4"
    transcode(clips["two_audio"], dst, audio=False, **FAST)
    assert video_props(dst)["audio"] == 0 and len(video_times(dst)) == 30


# ---------------------------------------------------------------- HDR, cut streams
def test_hdr_is_refused_unless_allowed(tmp_path):
    src = make_clip(tmp_path / "pq.mp4", frames=2, audio_streams=0, color_trc=16)
    with pytest.raises(InputError, match="HDR \\(PQ"):
        VideoReader(src)
    with pytest.warns(VideoWarning, match="HDR"):
        with VideoReader(src, allow_hdr=True) as r:
            assert r.info.hdr == "PQ" and len(list(r)) == 2


@pytest.mark.parametrize("suffix,extra", [(".mkv", 0), (".ts", 77)])
def test_cut_stream_is_processed_up_to_the_cut_with_a_warning(suffix, extra, tmp_path):
    full = make_clip(tmp_path / f"full{suffix}", frames=60)
    data = full.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2 + extra])
    dst = tmp_path / "out.mkv"
    with pytest.warns(VideoWarning, match="cut"):
        stats = transcode(cut, dst, **FAST)
    assert 10 < stats["frames"] < 60
    assert len(video_times(dst)) == stats["frames"]


# ---------------------------------------------------------------- bad input / output
def _unsupported_codec(d: Path) -> Path:
    # An AVI whose video FourCC no decoder knows.
    src = make_clip(d / "u.avi", codec="mpeg4", audio_streams=0, frames=3)
    bad = d / "unsupported.avi"
    bad.write_bytes(src.read_bytes().replace(b"FMP4", b"ZQZQ"))
    src.unlink()
    return bad


def _cut_mp4(d: Path) -> Path:
    src = make_clip(d / "whole.mp4", frames=30)
    bad = d / "half.mp4"
    data = src.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    src.unlink()
    return bad


def _cut_mp4_index(d: Path) -> Path:
    """Cut inside the index (moov, written last): FFmpeg opens it and finds a video track with no
    codec description, which is not an unsupported codec."""
    src = make_clip(d / "whole.mp4", frames=30)
    data = src.read_bytes()
    moov = data.rindex(b"moov") - 4
    assert moov > data.index(b"mdat")
    bad = d / "cut_index.mp4"
    bad.write_bytes(data[: moov + 400])
    src.unlink()
    return bad


BAD_INPUTS = {
    "missing": (lambda d: d / "nope.mp4", "not found"),
    "directory": (lambda d: (d / "adir.mp4").mkdir() or d / "adir.mp4", "directory"),
    "empty": (lambda d: (d / "empty.mp4").write_bytes(b"") and None or d / "empty.mp4", "empty"),
    "text": (lambda d: (d / "text.mp4").write_text("hello, not a video\n" * 50) and d / "text.mp4",
             "not a video file"),
    "mp4_cut_in_half": (_cut_mp4, "incomplete"),
    "mp4_cut_in_its_index": (_cut_mp4_index, "incomplete"),
    "no_video_stream": (lambda d: make_audio_only(d / "sound.m4a"), "no video stream"),
    "unsupported_codec": (_unsupported_codec, "unsupported video codec"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_gives_one_line_error_and_no_file(name, tmp_path):
    make, pattern = BAD_INPUTS[name]
    src = make(tmp_path)
    before = only_files(tmp_path)
    dst = tmp_path / "out.mp4"
    with pytest.raises(InputError, match=pattern) as err:
        transcode(src, dst)
    assert "\n" not in str(err.value) and str(src.name) in str(err.value)
    assert only_files(tmp_path) == before  # no output, no temp file


def _unwritable(tmp_path: Path) -> Path:
    if os.geteuid() == 0:  # root ignores permission bits: sysfs refuses new files even to root
        return Path("/sys/out.mp4")
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    return d / "out.mp4"


@pytest.mark.parametrize("case,pattern", [
    ("unwritable", "not writable"),
    ("missing_folder", "does not exist"),
    ("same_as_input", "is the input"),
    ("exists", "output exists"),
    ("bad_suffix", "unknown container"),
    ("bad_encoder", "unknown video encoder"),
    ("odd_420", "even frame size"),
])
def test_bad_output_gives_one_line_error_and_no_file(case, pattern, clips, tmp_path):
    src = clips["odd_853x479"] if case == "odd_420" else clips["mp4_cfr_aac"]
    kw = {}
    dst = {"unwritable": lambda: _unwritable(tmp_path),
           "missing_folder": lambda: tmp_path / "no" / "out.mp4",
           "same_as_input": lambda: src,
           "exists": lambda: (tmp_path / "out.mp4").write_bytes(b"keep me") and tmp_path / "out.mp4",
           "bad_suffix": lambda: tmp_path / "out.xyz",
           "bad_encoder": lambda: tmp_path / "out.mp4",
           "odd_420": lambda: tmp_path / "out.mp4"}[case]()
    if case == "bad_encoder":
        kw["codec"] = "libnonexistent"
    if case == "odd_420":
        kw["pix_fmt"] = "yuv420p"
    before_src = src.read_bytes()
    before = only_files(tmp_path)
    with pytest.raises(OutputError, match=pattern) as err:
        transcode(src, dst, **kw)
    assert "\n" not in str(err.value)
    assert only_files(tmp_path) == before
    assert src.read_bytes() == before_src
    if case == "exists":
        assert dst.read_bytes() == b"keep me"
        transcode(src, dst, overwrite=True, **FAST)  # allowed on request
        assert len(video_times(dst)) == 30


def test_ctrl_c_mid_write_leaves_no_file(clips, tmp_path):
    dst = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        with VideoReader(clips["mp4_cfr_aac"]) as r, VideoWriter(dst, r.info, **FAST) as w:
            for item in r.stream():
                if isinstance(item, Frame):
                    w.write(item.image, item.pts, item.time_base)
                    if item.index == 10:
                        assert any(p.name.startswith(".out.") for p in tmp_path.iterdir())
                        raise KeyboardInterrupt
                else:
                    w.mux(item)
    assert only_files(tmp_path) == []


def test_error_in_processing_leaves_no_file(clips, tmp_path):
    calls = []

    def boom(img):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("model crashed")
        return img

    with pytest.raises(RuntimeError):
        transcode(clips["mp4_cfr_aac"], tmp_path / "out.mp4", process=boom, **FAST)
    assert only_files(tmp_path) == []


def test_abort_and_writer_without_frames(clips, tmp_path):
    with VideoReader(clips["mp4_cfr_aac"]) as r:
        w = VideoWriter(tmp_path / "a.mp4", r.info)
        w.write(next(iter(r)).image, 0, r.info.time_base)
        w.abort()
        with pytest.raises(OutputError, match="no video frames"):
            VideoWriter(tmp_path / "b.mp4", r.info).close()
    assert only_files(tmp_path) == []


def test_write_accepts_uint16_and_auto_pts(clips, tmp_path):
    with VideoReader(clips["mp4_cfr_aac"]) as r:
        with VideoWriter(tmp_path / "a.mkv", r.info, audio=False, **FAST) as w:
            for f in r:
                w.write((f.image.astype(np.uint16) * 257))  # pts None: CFR at info.fps
    t = video_times(tmp_path / "a.mkv")
    assert len(t) == 30 and t[1] - t[0] == pytest.approx(1 / 30, abs=1e-3)


# ---------------------------------------------------------------- real clips (../shared)
def test_real_night_clip_round_trip(night_clip, tmp_path):
    dst = tmp_path / "night.mp4"
    stats = transcode(night_clip, dst, **FAST)
    assert stats["frames"] == 1118
    # 39 of the 1118 frames sit before the MP4 edit list's start (FFmpeg hides them): the reader
    # keeps them (negative times) and the writer re-creates the edit list, so both views match.
    t_in, t_out = video_packet_times(night_clip), video_packet_times(dst)
    assert len(t_in) == len(t_out) == 1118 and t_in[0] < 0
    assert t_out == pytest.approx(t_in, abs=1e-9)
    assert len(video_times(dst)) == 1079  # what players show, as for the input
    a_in, a_out = audio_packets(night_clip), audio_packets(dst)
    assert len(a_in) == 1 and len(a_in[0]) > 1000 and a_in == a_out


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_real_avi_mp3_round_trip(shared_dir, suffix, tmp_path):
    src = shared_dir / "media" / "day_traffic_msmpeg4_mp3.avi"
    if not src.is_file():
        pytest.skip(f"{src} is absent")
    dst = tmp_path / f"traffic{suffix}"
    stats = transcode(src, dst, end=4.0, **FAST)  # 4 s keep this test quick
    assert stats["frames"] == 120
    assert len(video_times(dst)) == 120
    with VideoReader(src, end=4.0) as r:
        want = [bytes(p.packet) for p in r.stream() if not isinstance(p, Frame)]
    assert audio_packets(dst) == [want] and len(want) > 50


# ---------------------------------------------------------------- URLs, edit lists, containers
def test_url_input_streams_frames_and_audio(tmp_path):
    import functools
    import http.server
    import threading

    src = make_clip(tmp_path / "live.ts", frames=30)  # TS: streamable, no seeking needed
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/live.ts"
        with VideoReader(url) as r:
            items = list(r.stream())
        frames = [x for x in items if isinstance(x, Frame)]
        assert len(frames) == 30
        assert [bytes(x.packet) for x in items if not isinstance(x, Frame)] == audio_packets(src)[0]
    finally:
        server.shutdown()
    with pytest.raises(InputError, match="cannot open http://127.0.0.1:9/"):
        VideoReader("http://127.0.0.1:9/nothing.mp4")


def test_container_refusing_audio_and_aac_is_a_clear_error(clips, tmp_path):
    # (WebM now takes the audio re-encoded to Opus: tests/test_defects.py; IVF takes no audio)
    with pytest.raises(OutputError, match="write .mkv"):
        transcode(clips["mp4_cfr_aac"], tmp_path / "out.ivf", codec="libvpx-vp9")
    assert only_files(tmp_path) == []


def test_trimmed_read_skips_edit_list_hidden_frames(night_clip):
    with VideoReader(night_clip, end=1.0) as r:
        times = [f.time for f in r]
    assert len(times) == 30 and times[0] == 0.0  # the 39 hidden frames (t < 0) are not in [0, 1)


def test_subtitles_are_copied_or_left_out_with_a_warning(tmp_path):
    src = with_subtitles(make_clip(tmp_path / "v.mp4"), tmp_path / "subs.mkv",
                         [(0.1, 0.4, "Hello"), (0.5, 0.9, "World")])
    with VideoReader(src) as r:
        assert [s.kind for s in r.info.passthrough] == ["audio", "subtitle"]
    dst = tmp_path / "out.mkv"
    transcode(src, dst, **FAST)
    with av.open(str(dst)) as c:
        assert [bytes(p) for p in c.demux(subtitles=0) if p.size] == [b"Hello", b"World"]
    assert audio_packets(dst) == audio_packets(src)
    with pytest.warns(VideoWarning, match="subtitles .* left out"):
        transcode(src, tmp_path / "out.mp4", **FAST)
    assert audio_packets(tmp_path / "out.mp4") == audio_packets(src)


@pytest.mark.parametrize("codec,pix_fmt", [("libx265", None), ("libx265", "yuv420p10le")])
def test_other_encoder_by_name(codec, pix_fmt, clips, tmp_path):
    src = clips["mkv_vfr"]
    dst = tmp_path / "hevc.mkv"
    transcode(src, dst, codec=codec, pix_fmt=pix_fmt, **FAST)
    with av.open(str(dst)) as c:
        assert c.streams.video[0].codec_context.name == "hevc"
        assert c.streams.video[0].codec_context.pix_fmt == (pix_fmt or "yuv420p")
    assert video_times(dst) == pytest.approx(video_times(src), abs=1e-9)
    assert audio_packets(dst) == audio_packets(src)


_EXIT_SCRIPT = """
import sys
from vidllie.video import VideoReader
path, mode = sys.argv[1], sys.argv[2]
if mode == "with":
    with VideoReader(path) as r:
        r.info
elif mode == "close":
    r = VideoReader(path)
    r.close()
    del r
else:  # never closed: left to interpreter exit
    r = VideoReader(path)
"""


@pytest.mark.parametrize("mode", ["with", "close", "open"])
def test_process_exits_after_reading_only_info(night_clip, mode):
    """A frame-threaded H.264 decoder freed with frames in flight can deadlock FFmpeg at exit: the
    reader drains it on close, whichever way it is closed."""
    import subprocess
    import sys

    for _ in range(3):
        proc = subprocess.run([sys.executable, "-c", _EXIT_SCRIPT, str(night_clip), mode],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr


def test_a_stream_left_out_of_the_output_is_named(tmp_path):
    """The first video stream is enhanced, audio and subtitles copied; anything else (a second
    camera, a data track) is named in a warning, never dropped in silence."""
    src = make_two_camera_clip(tmp_path / "two.mkv")
    with pytest.warns(VideoWarning, match=r"not carried into the output: #1 video \(h264 48x24\)"):
        with VideoReader(src) as reader:
            assert reader.info.width == 64 and sum(1 for _ in reader) == 6
    with warnings.catch_warnings():
        warnings.simplefilter("error", VideoWarning)
        with VideoReader(make_clip(tmp_path / "plain.mp4", frames=3)) as reader:  # audio only: nothing to say
            list(reader)
        with VideoReader(src, passthrough=False) as reader:  # frames only: the caller asked for no streams
            list(reader)
    with pytest.warns(VideoWarning, match=r"#0 video \(h264 64x48\).*enhances video stream #1"):
        with VideoReader(src, video_stream=1) as reader:  # the rear camera instead
            assert (reader.info.width, reader.info.height) == (48, 24) and sum(1 for _ in reader) == 6
    with pytest.raises(InputError, match=r"stream #2 of .* not a video stream \(its video streams: #0, #1\)"):
        VideoReader(src, video_stream=2)
