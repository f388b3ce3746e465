"""Pure tensor ops shared by the pipeline and training (colour, luma, grey frames)."""

from vidllie.ops.color import (
    BT709_LUMA,
    apply_gain,
    check_image,
    from_uint8_image,
    linear_to_srgb,
    luma,
    mean_luma,
    quantize,
    srgb_to_linear,
    to_uint8_image,
)
from vidllie.ops.grey import is_grey, keep_grey, to_grey

__all__ = [
    "BT709_LUMA",
    "apply_gain",
    "check_image",
    "from_uint8_image",
    "is_grey",
    "keep_grey",
    "linear_to_srgb",
    "luma",
    "mean_luma",
    "quantize",
    "srgb_to_linear",
    "to_grey",
    "to_uint8_image",
]
