"""Turn uploaded bytes into a usable RGB image, or say in plain words why not.

Everything that reads an image a user gave us (the app's upload widget, the
label store, the CLI) goes through :func:`image_from_bytes`, so the checks for
empty, oversized, damaged, hostile and oddly-encoded files live in one place.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import struct
import unicodedata
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_IMAGE_PIXELS",
    "MAX_UPLOAD_BYTES",
    "UnusableImageError",
    "image_format_extension",
    "image_from_bytes",
    "image_from_path",
]

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_IMAGE_PIXELS = 50_000_000
# File suffixes that count as images when a folder is scanned (training photos, the label store, the CLI).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"})

# Only formats a phone, camera or browser produces. Restricting Image.open to
# these also keeps exotic plugins (EPS hands files to Ghostscript, for one)
# away from untrusted uploads. MPO is how Pillow reports many camera JPEGs;
# it has no opener of its own (the JPEG plugin returns it).
_EXTENSIONS = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "GIF": "gif",
    "WEBP": "webp",
    "BMP": "bmp",
    "TIFF": "tiff",
}
_FORMATS = tuple(f for f in _EXTENSIONS if f != "MPO")
_FORMAT_NAMES = "JPEG, PNG, GIF, WebP, BMP or TIFF"

# What Pillow's decoders raise on bad input. Anything from this list while
# reading untrusted bytes means "the file is damaged", not "picsort has a bug".
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    struct.error,
    zlib.error,
)
# Image.open already turns SyntaxError/IndexError/TypeError/struct.error into
# "unidentified"; what still escapes is a recognised but broken header.
_HEADER_ERRORS = (OSError, ValueError, EOFError, zlib.error)
_BOMB_ERRORS = (Image.DecompressionBombError, Image.DecompressionBombWarning)


class UnusableImageError(ValueError):
    """An uploaded file cannot be used as an image; the message is meant for the user."""

    def __init__(self, message: str, *, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name


def image_from_bytes(
    data: bytes | bytearray | memoryview, name: str = "image"
) -> Image.Image:
    """Decode uploaded bytes into a fully loaded, upright, 8-bit RGB image (first frame).

    ``name`` is only used in error messages. Raises :class:`UnusableImageError`
    for empty, too big, unreadable, damaged or too-many-pixel files.
    """
    raw = _checked_bytes(data, name)
    label = _display_name(name)
    with _bombs_refused(label, name):
        im = _open(raw, name)
        # Size comes from the header: refuse before any pixels are decoded.
        _check_pixels(im.size, name)
        try:
            im.load()
        except _BOMB_ERRORS:
            raise
        except _DECODE_ERRORS as exc:
            raise UnusableImageError(
                f"{label} is damaged or incomplete", name=name
            ) from exc
        # Some formats (GIF frames, TIFF tiles) can only reveal their
        # true extent while decoding.
        _check_pixels(im.size, name)

    _apply_exif_orientation(im)
    try:
        return _to_rgb(im)
    except _DECODE_ERRORS as exc:
        raise UnusableImageError(
            f"{label} uses a colour format we can't read", name=name
        ) from exc


def image_from_path(path: str | os.PathLike[str]) -> Image.Image:
    """Read an image file from disk with the same checks as :func:`image_from_bytes`."""
    path = Path(path)
    label = _display_name(path.name)
    try:
        size = path.stat().st_size
        # Don't read a 4 GB file into memory just to reject it.
        if size > MAX_UPLOAD_BYTES:
            raise UnusableImageError(_too_many_bytes_message(label), name=path.name)
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise UnusableImageError(f"{label} was not found", name=path.name) from exc
    except IsADirectoryError as exc:
        raise UnusableImageError(f"{label} is a folder, not an image", name=path.name) from exc
    except OSError as exc:
        raise UnusableImageError(f"{label} could not be read", name=path.name) from exc
    return image_from_bytes(data, name=path.name)


def image_format_extension(data: bytes | bytearray | memoryview, name: str = "image") -> str:
    """Lowercase file extension ("jpg", "png", "gif", "webp", "bmp", "tiff") for the image's format."""
    raw = _checked_bytes(data, name)
    with _bombs_refused(_display_name(name), name):
        im = _open(raw, name)
    return _EXTENSIONS[im.format]


@contextlib.contextmanager
def _bombs_refused(label: str, name: str):
    """Turn Pillow's decompression-bomb warning and error into UnusableImageError, for this call only."""
    # Pillow only *warns* about mid-sized bombs; make that an error here
    # (scoped to this call, Pillow's global limit is left alone).
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except _BOMB_ERRORS as exc:
        raise UnusableImageError(_too_large_message(label, str(exc)), name=name) from exc


def _checked_bytes(data: bytes | bytearray | memoryview, name: str) -> bytes:
    """Bytes of ``data`` after the cheap checks (type, empty, byte-size limit)."""
    if isinstance(data, str):
        # A str here is a programming error (e.g. a path passed by mistake).
        raise TypeError("image data must be bytes, bytearray or memoryview, not str")
    view = memoryview(data)  # TypeError for anything that isn't a buffer
    label = _display_name(name)
    if view.nbytes == 0:
        raise UnusableImageError(f"{label} is empty", name=name)
    if view.nbytes > MAX_UPLOAD_BYTES:
        raise UnusableImageError(_too_many_bytes_message(label), name=name)
    # ipywidgets 8 hands uploads over as memoryview; Pillow wants a file.
    return view.tobytes()


def _open(raw: bytes, name: str) -> Image.Image:
    """Identify the format and read the header only."""
    label = _display_name(name)
    try:
        im = Image.open(io.BytesIO(raw), formats=_FORMATS)
    except UnidentifiedImageError as exc:
        raise UnusableImageError(
            f"{label} is not an image (or not a format we can read). "
            f"Please use a {_FORMAT_NAMES} file.",
            name=name,
        ) from exc
    except _BOMB_ERRORS:
        raise
    except _HEADER_ERRORS as exc:
        # Recognised as an image format, but the header itself is broken.
        raise UnusableImageError(f"{label} is damaged or incomplete", name=name) from exc
    return im


def _check_pixels(size: tuple[int, int], name: str) -> None:
    width, height = size
    if width * height > MAX_IMAGE_PIXELS:
        raise UnusableImageError(
            _too_large_message(_display_name(name), pixels=width * height), name=name
        )


def _too_many_bytes_message(label: str) -> str:
    return f"{label} is larger than the {_human_bytes(MAX_UPLOAD_BYTES)} limit"


def _human_bytes(count: int) -> str:
    for unit, size in (("MB", 1024 * 1024), ("KB", 1024)):
        if count >= size:
            return f"{round(count / size, 1):g} {unit}"
    return f"{count} bytes"


def _too_large_message(label: str, pillow_message: str = "", pixels: int | None = None) -> str:
    if pixels is None:
        # Pillow's own bomb errors say "Image size (N pixels) exceeds ...".
        match = re.search(r"\((\d+) pixels\)", pillow_message)
        pixels = int(match.group(1)) if match else None
    limit = f"the limit is {_megapixels(MAX_IMAGE_PIXELS)}"
    if pixels is None:
        return f"{label} is too large: {limit} megapixels"
    return f"{label} is too large: {_megapixels(pixels)} megapixels, {limit}"


def _megapixels(pixels: int) -> str:
    # Round up to one decimal so an image just over the limit never reads as
    # "50 megapixels, the limit is 50".
    return f"{math.ceil(pixels / 100_000) / 10:g}"


def _display_name(name: str) -> str:
    """The user's file name, quoted, made safe to show (no control characters, bounded length)."""
    text = "".join(
        "?" if unicodedata.category(ch).startswith("C") else ch for ch in str(name)
    )
    if len(text) > 80:
        text = text[:77] + "..."
    return f"'{text}'"


def _apply_exif_orientation(im: Image.Image) -> None:
    """Rotate/flip ``im`` in place so it is the right way up."""
    try:
        ImageOps.exif_transpose(im, in_place=True)
    except _DECODE_ERRORS:
        # Broken EXIF in an otherwise fine photo: keep the pixels as stored
        # rather than refusing the upload over a metadata problem.
        pass


def _to_rgb(im: Image.Image) -> Image.Image:
    """A new 8-bit RGB image from ``im`` whatever its mode."""
    mode = im.mode
    if mode.startswith("I;16"):
        # Full 16-bit range -> 8 bit, rounded: round(v * 255 / 65535).
        # (Pillow's own convert clips everything above 255 to white.)
        values = np.asarray(im).astype(np.uint32)
        return _gray_to_rgb((values * 255 + 32767) // 65535)
    if mode in ("I", "F"):
        return _gray_to_rgb(_wide_to_8bit(np.asarray(im), is_float=mode == "F"))
    if mode == "P" and "transparency" in im.info:
        # Same colours as a direct convert("RGB") (what fastai does), without
        # Pillow's warning about byte-string palette transparency.
        return im.convert("RGBA").convert("RGB")
    # RGBA/LA: plain convert drops alpha exactly like fastai's
    # PILImage.create, so the app sees what training saw.
    return im.convert("RGB")


def _wide_to_8bit(values: np.ndarray, *, is_float: bool) -> np.ndarray:
    """Map 32-bit integer or float pixels onto 0..255.

    These modes carry no statement of their range, so go by the values:
    data that fits a conventional range (0..1 for floats, 0..255, 0..65535
    for integers) keeps its meaning; anything else is stretched min..max.
    """
    values = values.astype(np.float32)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, np.uint8)
    lo = float(values[finite].min())
    hi = float(values[finite].max())
    values = np.nan_to_num(values, nan=lo, posinf=hi, neginf=lo)
    if lo >= 0 and is_float and hi <= 1:
        scaled = values * 255
    elif lo >= 0 and hi <= 255:
        scaled = values
    elif lo >= 0 and not is_float and hi <= 65535:
        scaled = values * (255 / 65535)
    elif hi > lo:
        scaled = (values - lo) * (255 / (hi - lo))
    else:
        scaled = values  # constant image outside 0..255: clipped below
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _gray_to_rgb(values: np.ndarray) -> Image.Image:
    return Image.fromarray(values.astype(np.uint8)).convert("RGB")
