"""Pure tensor ops shared by the pipeline and training (colour, luma)."""

from vidllie.ops.color import (
    BT709_LUMA,
    check_image,
    from_uint8_image,
    linear_to_srgb,
    luma,
    mean_luma,
    quantize,
    srgb_to_linear,
    to_uint8_image,
)

__all__ = [
    "BT709_LUMA",
    "check_image",
    "from_uint8_image",
    "linear_to_srgb",
    "luma",
    "mean_luma",
    "quantize",
    "srgb_to_linear",
    "to_uint8_image",
]
