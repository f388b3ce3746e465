"""Drawing for ``vidllie preview``: the labelled contact sheet, split-screen frames, PNG output.

Frames are scaled with kornia (antialiased); text is drawn with Pillow's bundled font. Images are
(H, W, 3) uint8 RGB arrays throughout::

    sheet = contact_sheet([[(img_in, "0:12.5 input  luma 6.3"), (img_out, "default  luma 22.1")]],
                          title="night.mp4", width=320)
    write_png(sheet, "sheet.png")
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import kornia
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from vidllie.errors import OutputError

FONT_SIZE = 14
BAND = 20  # height of a label band, pixels
GAP = 4  # space between cells, pixels
BACKGROUND = (24, 24, 24)
TEXT = (235, 235, 235)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """uint8 as is; uint16 (0..65535) scaled to uint8."""
    if image.dtype == np.uint16:
        return (image.astype(np.float32) * (255 / 65535) + 0.5).astype(np.uint8)
    return image


def scale(image: np.ndarray, width: int) -> np.ndarray:
    """Resize to ``width`` pixels wide (aspect kept), antialiased; uint8 out.

    >>> scale(np.zeros((36, 64, 3), np.uint8), 32).shape
    (18, 32, 3)
    """
    image = to_uint8(image)
    h, w = image.shape[:2]
    height = max(1, round(h * width / w))
    if (height, width) == (h, w):
        return image
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    y = kornia.geometry.transform.resize(x, (height, width), interpolation="bilinear", antialias=True)
    return y[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def text_band(text: str, width: int) -> np.ndarray:
    """A (BAND, width, 3) strip with ``text`` on the background colour."""
    band = Image.new("RGB", (width, BAND), BACKGROUND)
    ImageDraw.Draw(band).text((4, 2), text, fill=TEXT, font=ImageFont.load_default(size=FONT_SIZE))
    return np.asarray(band)


def contact_sheet(rows: list[list[tuple[np.ndarray, str]]], *, title: str, width: int) -> np.ndarray:
    """Cells ``(image, label)`` in rows; every image scaled to ``width`` and labelled above.

    >>> cell = (np.zeros((36, 64, 3), np.uint8), "label")
    >>> contact_sheet([[cell, cell]], title="t", width=64).shape
    (80, 140, 3)
    """
    cells = [[np.concatenate([text_band(label, width), scale(img, width)]) for img, label in row] for row in rows]
    columns = max(len(row) for row in cells)
    sheet_width = columns * width + (columns + 1) * GAP
    parts = [text_band(title, sheet_width)]
    for row in cells:
        height = max(c.shape[0] for c in row)
        strip = np.empty((height + GAP, sheet_width, 3), np.uint8)
        strip[...] = BACKGROUND
        for i, cell in enumerate(row):
            x = GAP + i * (width + GAP)
            strip[: cell.shape[0], x : x + width] = cell
        parts.append(strip)
    return np.concatenate(parts)


def split_screen(before: np.ndarray, after: np.ndarray, divider: int = 2) -> np.ndarray:
    """One frame: the left half of ``before``, the right half of ``after``, a white divider.

    >>> a, b = np.zeros((4, 8, 3), np.uint8), np.full((4, 8, 3), 9, np.uint8)
    >>> split_screen(a, b)[0, :, 0].tolist()
    [0, 0, 0, 255, 255, 9, 9, 9]
    """
    if before.shape != after.shape:
        raise ValueError(f"split screen needs two frames of one shape, got {before.shape} and {after.shape}")
    out = after.copy()
    w = before.shape[1]
    mid = w // 2
    out[:, :mid] = before[:, :mid]
    top = np.iinfo(out.dtype).max
    out[:, max(0, mid - divider // 2) : mid + (divider + 1) // 2] = top
    return out


def write_png(image: np.ndarray, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``image`` as a PNG, complete or not at all (temp file in the folder, then rename)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputError(f"{path} exists; pass -y to overwrite")
    tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.part.png")
    try:
        f = open(tmp, "xb")  # the usual permissions (umask), unlike mkstemp's 0600
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror}") from None
    try:
        with f:
            Image.fromarray(to_uint8(image)).save(f, format="PNG", optimize=True)
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise OutputError(f"cannot write {path}: {err.strerror or err}") from None
        raise
    return path
