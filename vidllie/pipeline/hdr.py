"""HDR (HLG/PQ) input on the device: the model works on SDR BT.709, so an HDR batch is converted
to it after upload and, for ``hdr="keep"``, the model's output goes back to HLG before download.

``hdr`` modes of a video run (``hdr=`` of :func:`vidllie.enhance_video`, ``--hdr`` on the CLI):

- ``"sdr"`` (default): HLG/PQ -> SDR BT.709 in linear light (:func:`vidllie.ops.hdr.hdr_to_sdr`:
  inverse OETF/EOTF, BT.2020 -> BT.709 with gamut compression, BT.2390 highlight tone map);
  the output is SDR BT.709, tagged so.
- ``"keep"``: the same conversion for the model, then :func:`vidllie.ops.hdr.sdr_to_hlg`: the
  enhanced SDR picture is linearised and divided by the tone map's per-pixel ratio, i.e. the
  model's change is applied as a gain in linear light to the original HDR light, so highlights
  the tone map compressed come back. The output is 10-bit HEVC HLG, BT.2020 (PQ input too).
- ``"as-is"``: code values as they are, no conversion (the reader's ``allow_hdr=True``).

SDR input is unaffected by every mode (``"keep"`` then writes SDR, with a warning).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vidllie.ops.hdr import hdr_to_sdr, sdr_to_hlg

HDR_MODES = ("sdr", "keep", "as-is")
# Nominal peak (cd/m2) of the HLG display and of PQ masters: BT.2100's HLG reference display, and
# the common HDR10 mastering peak (PQ light above it is clipped by the tone map).
NOMINAL_PEAK = 1000.0
SDR_WHITE = 100.0  # cd/m2 that SDR 1.0 stands for (FFmpeg zscale's npl=100)


def check_mode(mode: str) -> str:
    """The ``hdr`` mode, checked (ValueError names the choices).

    Example:
        >>> check_mode("keep")
        'keep'
    """
    if mode not in HDR_MODES:
        raise ValueError(f"hdr must be one of {', '.join(HDR_MODES)}; got {mode!r}")
    return mode


@dataclass
class HdrConversion:
    """The conversion of one run: ``transfer`` ("HLG" | "PQ") of the input, ``mode`` "sdr" |
    "keep". :meth:`to_sdr` on the uploaded batch, :meth:`to_output` on the model's output."""

    transfer: str
    mode: str = "sdr"
    peak: float = NOMINAL_PEAK
    sdr_white: float = SDR_WHITE

    def to_sdr(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) HDR signal in [0, 1] -> (SDR BT.709 signal, tone-map ratio)."""
        return hdr_to_sdr(x, self.transfer, peak=self.peak, sdr_white=self.sdr_white)

    def to_output(self, y: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
        """The model's SDR output -> what is written: itself ("sdr") or HLG ("keep")."""
        if self.mode == "keep":
            return sdr_to_hlg(y, ratio, peak=self.peak, sdr_white=self.sdr_white)
        return y

    def describe(self) -> dict[str, object]:
        """What was done, for the stats (``--stats-json``)."""
        steps = ("HLG inverse OETF + OOTF" if self.transfer == "HLG" else "PQ EOTF") + (
            f" ({self.peak:g} cd/m2 peak), BT.2020->BT.709 with gamut compression, "
            f"BT.2390 tone map to {self.sdr_white:g} cd/m2, inverse BT.1886 EOTF")
        if self.mode == "keep":
            steps += ("; after the model: gain applied in linear light to the HDR light, "
                      "BT.709->BT.2020, HLG inverse OOTF + OETF")
        return {"input": self.transfer, "mode": self.mode,
                "output": "HLG BT.2020 10-bit" if self.mode == "keep" else "SDR BT.709",
                "conversion": steps}


def conversion_for(hdr: str | None, mode: str) -> HdrConversion | None:
    """The conversion for an input whose ``VideoInfo.hdr`` is ``hdr``; None for SDR input or
    ``mode="as-is"``.

    Example:
        >>> conversion_for("HLG", "keep").mode, conversion_for(None, "sdr")
        ('keep', None)
    """
    check_mode(mode)
    if hdr is None or mode == "as-is":
        return None
    return HdrConversion(transfer=hdr, mode=mode)


def describe_video(source: str, mode: str = "sdr") -> dict[str, object]:
    """What ``vidllie info VIDEO`` prints: the video stream, and whether it is HDR and what
    ``vidllie enhance --hdr MODE`` does with it (opens the file, decodes the first frame)."""
    from vidllie.video import VideoReader

    check_mode(mode)
    with VideoReader(source, allow_hdr="convert", passthrough=True) as reader:
        i = reader.info
    conversion = conversion_for(i.hdr, mode)
    return {
        "source": i.source, "width": i.width, "height": i.height,
        "fps": float(i.fps) if i.fps else None, "frames": i.frame_count, "duration_s": i.duration,
        "codec": i.codec, "pix_fmt": i.pix_fmt, "bit_depth": i.bit_depth, "matrix": i.matrix,
        "audio_streams": len(i.audio), "hdr": i.hdr,
        "enhance": conversion.describe() if conversion is not None else {
            "input": i.hdr, "mode": mode, "conversion": None,
            "output": "SDR BT.709" if i.hdr is None else "code values as-is, tagged SDR BT.709"},
    }


__all__ = ["HDR_MODES", "HdrConversion", "check_mode", "conversion_for", "describe_video"]
