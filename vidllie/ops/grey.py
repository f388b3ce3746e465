"""Grey in, grey out: find frames that a monochrome (IR) camera recorded and keep an enhanced
output exactly grey for them.

A night-time IR camera stores every pixel with R = G = B. A colour network does not keep that
(it tints: mean |R-G| + |G-B| of 0.04 -> 3.9 on a real IR clip), so the output of such a frame is
replaced by its own BT.709 luma in all three channels: brightness and detail stay the network's,
colour that the camera never saw is dropped.

Example:
    >>> frames = torch.rand(2, 1, 8, 8).expand(-1, 3, -1, -1).clone()  # two grey frames
    >>> frames[1, 0, 0, 0] += 0.1                                        # the second has one tinted pixel
    >>> is_grey(frames).tolist()
    [True, False]
    >>> out = keep_grey(torch.rand(2, 3, 8, 8), frames)
    >>> bool((out[0, 0] == out[0, 1]).all() and (out[0, 1] == out[0, 2]).all()), bool((out[1, 0] == out[1, 1]).all())
    (True, False)
"""

from __future__ import annotations

import torch

from vidllie.ops.color import check_image, luma


def is_grey(x: torch.Tensor, tolerance: float = 0.0) -> torch.Tensor:
    """Which images of ``x`` (B, 3, H, W) are grey: every pixel has max - min over R, G, B at most
    ``tolerance`` (0 = exactly R = G = B; in the units of ``x``). Returns a (B,) bool tensor.

    Example:
        >>> is_grey(torch.full((1, 3, 2, 2), 0.5)).tolist(), is_grey(torch.rand(1, 3, 4, 4)).tolist()
        ([True], [False])
    """
    check_image(x, "frames")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    # A colour frame shows colour almost everywhere, so one pixel in 64 rejects it at a fiftieth of
    # the full test's cost (1.6 ms a 640x360 frame on the CPU); only frames that pass it are tested
    # in full. Exact: the sample is a subset. On a GPU both run (reading the sample back would sync).
    sample = _grey(x[..., ::8, ::8], tolerance)
    if x.device.type == "cpu" and not bool(sample.any()):
        return sample
    return sample & _grey(x, tolerance)


def _grey(x: torch.Tensor, tolerance: float) -> torch.Tensor:
    spread = x.amax(dim=1) - x.amin(dim=1)  # (B, H, W)
    return (spread <= tolerance).flatten(1).all(dim=1)


def to_grey(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> the same images in grey: BT.709 luma Y' in all three channels, so
    R = G = B exactly (a grey input keeps its values up to float rounding).

    Example:
        >>> g = to_grey(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
        >>> [round(v, 4) for v in g.flatten().tolist()]
        [0.2126, 0.2126, 0.2126]
    """
    check_image(x)
    return luma(x).expand_as(x).contiguous()


def keep_grey(output: torch.Tensor, frames: torch.Tensor, tolerance: float = 0.0) -> torch.Tensor:
    """``output`` (B, 3, H, W) with the images whose input ``frames`` (same B) are grey (see
    :func:`is_grey`) replaced by :func:`to_grey` of themselves; the others untouched. Sizes may
    differ (an output at another resolution); only the batch sizes must match.
    """
    check_image(output, "output")
    check_image(frames, "frames")
    if output.shape[0] != frames.shape[0]:
        raise ValueError(f"{output.shape[0]} outputs for {frames.shape[0]} input frames")
    grey = is_grey(frames, tolerance)
    # With no grey frame, ``output`` itself comes back (no copy) - on the CPU only: on a GPU the
    # test would be a device->host sync per batch on the hot path, and the select is cheap.
    if output.device.type == "cpu" and not bool(grey.any()):
        return output
    return torch.where(grey.view(-1, 1, 1, 1), to_grey(output), output)
