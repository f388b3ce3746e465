"""HDR (HLG/PQ) input: the conversions against the standards' reference values, and small
generated 10-bit HEVC HLG/PQ clips through the pipeline (SDR out by default, HLG with --hdr keep)."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from tests.media import audio_packets, make_clip, with_dolby_vision_84
from vidllie import Enhancer
from vidllie.cli import app
from vidllie.jobs.video_job import enhance_video_file
from vidllie.ops import hdr as H
from vidllie.ops.color import mean_luma
from vidllie.pipeline.hdr import HdrConversion
from vidllie.video import VideoReader

W, HT, FRAMES = 64, 48, 6


# ---------------------------------------------------------------- reference values
def test_hlg_reference_values():
    # BT.2100: signal 0.5 <-> scene linear 1/12 (the joint of the two segments), 1.0 <-> 1.0.
    assert float(H.hlg_inverse_oetf(torch.tensor(0.5))) == pytest.approx(1 / 12, abs=1e-7)
    assert float(H.hlg_oetf(torch.tensor(1 / 12))) == pytest.approx(0.5, abs=1e-6)
    assert float(H.hlg_oetf(torch.tensor(1.0))) == pytest.approx(1.0, abs=1e-6)
    # BT.2408: HLG 75 % on a 1000 cd/m2 display is reference white, 203 cd/m2.
    white = H.hdr_to_display(torch.full((3, 1, 1), 0.75), "HLG")
    assert float(white.mean()) == pytest.approx(203, abs=1.0)
    assert H.hlg_gamma(1000.0) == pytest.approx(1.2)
    x = torch.linspace(0, 1, 101)
    assert torch.allclose(H.hlg_oetf(H.hlg_inverse_oetf(x)), x, atol=1e-5)


def test_pq_reference_values():
    # ST 2084: 1.0 <-> 10000 cd/m2, 0.508 ~ 100 cd/m2, 0.7518 ~ 1000 cd/m2, 0 -> 0.
    assert float(H.pq_eotf(torch.tensor(1.0))) == pytest.approx(10000, rel=1e-5)
    assert float(H.pq_eotf(torch.tensor(0.508078))) == pytest.approx(100, rel=1e-3)
    assert float(H.pq_inverse_eotf(torch.tensor(1000.0))) == pytest.approx(0.7518, abs=1e-4)
    assert float(H.pq_eotf(torch.tensor(0.0))) == pytest.approx(0, abs=1e-6)
    x = torch.linspace(0, 1, 101, dtype=torch.float64)
    assert torch.allclose(H.pq_inverse_eotf(H.pq_eotf(x)), x, atol=1e-6)


def test_sdr_levels_match_zscale():
    # SDR grey levels (BT.709, 100 cd/m2 white) -> HLG / PQ as FFmpeg's zscale (zimg) writes them
    # (npl=100, display-referred: BT.1886 linearisation; values read from zscale's rgb48 output).
    levels = torch.tensor([0.02, 0.05, 0.1, 0.2, 0.5, 0.75, 1.0])
    zscale_hlg = [0.0133, 0.0332, 0.0664, 0.1327, 0.3318, 0.4977, 0.6296]
    zscale_pq = [0.0196, 0.0553, 0.108, 0.1911, 0.3524, 0.4405, 0.5081]
    nits = (H.bt1886_eotf(levels) * 100).view(1, 1, -1).expand(3, 1, -1)
    assert H.hlg_oetf(H.hlg_inverse_ootf(nits))[0, 0].tolist() == pytest.approx(zscale_hlg, abs=2e-4)
    assert H.pq_inverse_eotf(nits)[0, 0].tolist() == pytest.approx(zscale_pq, abs=2e-4)


def test_gamut_and_tone_mapping():
    # BT.2020 pure green is outside BT.709: compressed to the boundary, luminance kept.
    green = H.bt2020_to_bt709(torch.tensor([0.0, 0.5, 0.0]).view(3, 1, 1))
    assert float(green.min()) < 0
    mapped = H.gamut_compress(green)
    luma = torch.tensor(H.LUMA_709)
    assert float(mapped.min()) == 0.0
    assert float((mapped.flatten() * luma).sum()) == pytest.approx(float((green.flatten() * luma).sum()), rel=1e-5)
    inside = torch.tensor([0.2, 0.5, 0.1]).view(3, 1, 1)
    assert torch.equal(H.gamut_compress(inside), inside)
    # EETF: identity below the knee, the source peak to the target peak, monotonic.
    nits = torch.tensor([0.5, 10.0, 1000.0, 5000.0])
    out = H.bt2390_eetf(nits, 1000.0, 100.0)
    assert out[:2].tolist() == pytest.approx([0.5, 10.0], rel=1e-4)
    assert float(out[2]) == pytest.approx(100.0, rel=1e-3) and float(out[3]) == pytest.approx(100.0, rel=1e-3)
    ramp = H.bt2390_eetf(torch.linspace(0, 1000, 200), 1000.0, 100.0)
    assert bool((ramp[1:] >= ramp[:-1]).all())
    with pytest.raises(ValueError, match=r"\(\*, 3, H, W\)"):
        H.hdr_to_sdr(torch.zeros(2, 4, 4), "HLG")


def test_sdr_to_hlg_keeps_highlights():
    # A frame with a 1000 cd/m2 lamp: the SDR working copy compresses it, the way back restores it.
    x = torch.full((1, 3, 8, 8), 0.3)
    x[..., :2, :2] = 1.0
    sdr, ratio = H.hdr_to_sdr(x, "HLG")
    assert float(sdr.max()) <= 1.0 and float(ratio[..., 0, 0]) < 0.2
    back = H.sdr_to_hlg(sdr, ratio)
    assert torch.allclose(back, x, atol=2e-3)


# ---------------------------------------------------------------- clips through the pipeline
def hdr_scene(transfer: str):
    """A dark HDR street (signal ~0.15-0.3) with a bright lamp (HLG 0.95 / PQ 0.75 ~ 1000 cd/m2)."""
    lamp = 0.95 if transfer == "hlg" else 0.75
    base = 0.25 if transfer == "hlg" else 0.3
    yy, xx = np.mgrid[0:HT, 0:W]

    def fn(i: int) -> np.ndarray:
        img = np.empty((HT, W, 3), np.float64)
        img[..., 0] = base * (0.6 + 0.4 * xx / W)
        img[..., 1] = base * (0.6 + 0.4 * yy / HT)
        img[..., 2] = base * 0.7
        img[8:16, 8 + i:16 + i] = lamp
        return np.round(img * 65535).astype(np.uint16)

    return fn


@pytest.fixture(params=["hlg", "pq"])
def hdr_clip(request, tmp_path):
    return make_clip(tmp_path / f"{request.param}.mp4", codec="libx265", pix_fmt="yuv420p10le",
                     width=W, height=HT, frames=FRAMES, colour=request.param,
                     frame_fn=hdr_scene(request.param)), request.param


class Identity(nn.Module):
    def forward(self, x, *args, **kwargs):
        return x


def _identity_enhancer() -> Enhancer:
    return Enhancer(Identity(), device="cpu", temporal=0.0, reuse=False, runtime="torch", batch_size=4)


def test_reader_detects_hdr_and_converts_bt2020(hdr_clip):
    path, kind = hdr_clip
    with VideoReader(path, allow_hdr="convert") as r:
        assert r.info.hdr == kind.upper() and r.info.bit_depth == 10 and r.info.matrix == "bt2020"
        frame = next(iter(r)).image
    # BT.2020 NCL limited range decoded back to the signal drawn (10-bit 4:2:0, away from edges).
    want = hdr_scene(kind)(0)
    assert frame.dtype == np.uint16
    assert np.abs(frame[24:40, 24:56].astype(int) - want[24:40, 24:56]).max() < 65535 * 0.02


def test_hdr_clip_enhanced_to_sdr(hdr_clip, micro_path, tmp_path):
    path, kind = hdr_clip
    out = tmp_path / "out.mp4"
    stats = enhance_video_file(Enhancer(micro_path, device="cpu", batch_size=4), path, out)
    assert stats["frames"] == FRAMES
    assert stats["hdr"]["input"] == kind.upper() and stats["hdr"]["output"] == "SDR BT.709"
    with av.open(str(out)) as c:
        cc = c.streams.video[0].codec_context
        assert (int(cc.color_trc), int(cc.color_primaries), int(cc.colorspace)) == (1, 1, 1)
        assert sum(1 for _ in c.decode(video=0)) == FRAMES
    assert audio_packets(out) == audio_packets(path)


def test_hdr_sdr_conversion_is_tone_mapped(hdr_clip, tmp_path):
    # Identity model: the SDR output is the conversion (dark street below the knee: exact), and
    # the lamp is brought under SDR white rather than clipped.
    path, kind = hdr_clip
    out = tmp_path / "sdr.mkv"
    enhance_video_file(_identity_enhancer(), path, out, codec="ffv1", pix_fmt="yuv444p16le")
    with VideoReader(out) as r:
        img = next(iter(r)).image.astype(np.float64) / 65535
    x = torch.from_numpy(hdr_scene(kind)(0).astype(np.float32) / 65535).permute(2, 0, 1)[None]
    want = H.hdr_to_sdr(x, kind.upper())[0][0].permute(1, 2, 0).numpy()
    diff = np.abs(img[24:40, 24:56] - want[24:40, 24:56])  # 10-bit HEVC in, x265 crf 18
    assert diff.mean() < 0.01 and diff.max() < 0.05
    assert 0.75 < img[10:14, 10:14].mean() < 1.0


def test_hdr_keep_writes_10bit_hlg(hdr_clip, tmp_path):
    path, kind = hdr_clip
    out = tmp_path / "keep.mp4"
    stats = enhance_video_file(_identity_enhancer(), path, out, hdr="keep")
    assert stats["hdr"]["mode"] == "keep" and stats["frames"] == FRAMES
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        cc = v.codec_context
        assert cc.name == "hevc" and cc.pix_fmt == "yuv420p10le"
        assert (int(cc.color_primaries), int(cc.color_trc), int(cc.colorspace)) == (9, 18, 9)
        assert sum(1 for _ in c.decode(video=0)) == FRAMES
    with VideoReader(out, allow_hdr="convert") as r:
        assert r.info.hdr == "HLG"
        img = next(iter(r)).image.astype(np.float64) / 65535
    if kind == "hlg":  # identity model: the HLG signal comes back, the lamp's highlight included
        want = hdr_scene(kind)(0) / 65535
        assert np.abs(img[24:40, 24:56] - want[24:40, 24:56]).max() < 0.02
        assert img[10:14, 10:14].mean() > 0.9
    else:  # PQ 1000 cd/m2 lamp -> HLG peak on a 1000 cd/m2 display
        assert img[10:14, 10:14].mean() > 0.9


def test_hdr_as_is_and_reader_refusal(hdr_clip, tmp_path):
    path, kind = hdr_clip
    from vidllie.errors import InputError

    with pytest.raises(InputError, match="HDR"):
        VideoReader(path)
    with pytest.warns(UserWarning, match="as-is"):
        stats = enhance_video_file(_identity_enhancer(), path, tmp_path / "raw.mp4", hdr="as-is")
    assert stats["hdr"]["conversion"] is None and stats["hdr"]["input"] == kind.upper()


def test_cli_hdr_option_and_stats(tmp_path, micro_path):
    src = make_clip(tmp_path / "hlg.mp4", codec="libx265", pix_fmt="yuv420p10le", width=W,
                    height=HT, frames=FRAMES, colour="hlg", frame_fn=hdr_scene("hlg"))
    stats = tmp_path / "s.json"
    res = CliRunner().invoke(app, ["enhance", str(src), "-o", str(tmp_path / "o.mp4"), "--model",
                                   str(micro_path), "--hdr", "keep", "--stats-json", str(stats), "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads(stats.read_text())["hdr"]["output"] == "HLG BT.2020 10-bit"
    bad = CliRunner().invoke(app, ["enhance", str(src), "-o", str(tmp_path / "p.mp4"), "--hdr", "pq"])
    assert bad.exit_code == 2 and "--hdr must be" in bad.output


def test_info_on_a_video_says_hdr(tmp_path):
    src = make_clip(tmp_path / "pq.mp4", codec="libx265", pix_fmt="yuv420p10le", width=W,
                    height=HT, frames=2, colour="pq", frame_fn=hdr_scene("pq"))
    res = CliRunner().invoke(app, ["info", str(src), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["hdr"] == "PQ" and d["bit_depth"] == 10 and d["enhance"]["output"] == "SDR BT.709"
    assert "PQ EOTF" in d["enhance"]["conversion"]


@pytest.mark.parametrize("mode", ["sdr", "keep"])
def test_dolby_vision_84_reads_as_hlg(tmp_path, micro_path, mode):
    hlg = make_clip(tmp_path / "hlg.mp4", codec="libx265", pix_fmt="yuv420p10le", width=W,
                    height=HT, frames=FRAMES, colour="hlg", frame_fn=hdr_scene("hlg"))
    dv = with_dolby_vision_84(hlg, tmp_path / "dv.mp4")
    assert b"dvcC" in dv.read_bytes()  # (`ffmpeg -i` lists it: "DOVI configuration record")
    out = tmp_path / f"out_{mode}.mp4"
    stats = enhance_video_file(Enhancer(micro_path, device="cpu", batch_size=4), dv, out, hdr=mode)
    assert stats["frames"] == FRAMES and stats["hdr"]["input"] == "HLG"
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == FRAMES
        assert int(c.streams.video[0].codec_context.color_trc) == (18 if mode == "keep" else 1)
    assert audio_packets(out) == audio_packets(dv)


def test_preview_of_an_hdr_clip_shows_the_sdr_conversion(hdr_clip, tmp_path):
    # preview converts HLG/PQ as enhance does: not refused, and the input column is the SDR
    # picture the model sees (identity model: input and output columns agree).
    from vidllie.jobs.preview import preview

    path, kind = hdr_clip
    got = preview(path, tmp_path / "sheet.png", models=[Identity()], moments=2, frames=2,
                  device="cpu", temporal=0.0, reuse=False, runtime="torch")
    assert got["hdr"]["input"] == kind.upper() and got["hdr"]["output"] == "SDR BT.709"
    for m in got["moments"]:
        (luma_out,) = m["luma_out"].values()
        assert abs(m["luma_in"] - luma_out) < 0.5, m
    with VideoReader(path, allow_hdr=True) as r:  # the shown frame, converted here
        frames = list(r)
    shown = min(frames, key=lambda f: abs(f.time - got["moments"][0]["time"])).image
    x = torch.from_numpy(shown.astype(np.float32) / 65535).permute(2, 0, 1)[None]
    sdr, _ = HdrConversion(kind.upper()).to_sdr(x)
    want = float(mean_luma(sdr.clamp(0, 1))[0]) * 255
    raw = float(mean_luma(x)[0]) * 255
    assert abs(got["moments"][0]["luma_in"] - want) < 0.5 and abs(raw - want) > 5
