"""Pictures made for picsort's tests and benchmarks, never used to serve: a photo the size a phone takes."""

from __future__ import annotations

from PIL import Image

PHONE_SIZE = (4032, 3024)  # a 12-megapixel phone photo


def phone_sized(picture: Image.Image) -> Image.Image:
    """`picture` upscaled to a phone photo's 12 megapixels, its aspect kept (4032x3024 for 4:3)."""
    scale = (PHONE_SIZE[0] * PHONE_SIZE[1] / (picture.width * picture.height)) ** 0.5
    return picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.BICUBIC)
