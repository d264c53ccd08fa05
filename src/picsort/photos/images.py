"""Turn what a user gives us into a usable RGB image, or say in plain words why not.

Everything that reads an image (the app's upload widget, the label store, the CLI, the Python API) goes
through this module, so the accepted formats and the checks for empty, oversized, damaged, hostile and
oddly-encoded images live in one place. With ``min_side`` an image is decoded no larger than needed:
JPEGs straight from the DCT at 1/2, 1/4 or 1/8 scale, other formats reduced right after decoding;
``decode_image`` says whether it was (``DecodedImage.reduced``).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import stat
import struct
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import pillow_heif
from PIL import ExifTags, Image, UnidentifiedImageError

from picsort.foundation.remote import is_url
from picsort.foundation.shown_text import human_bytes, shown_name

__all__ = [
    "ACCEPTED_FORMATS_TEXT",
    "DecodedImage",
    "IMAGE_FORMATS",
    "IMAGE_SUFFIXES",
    "ImageInput",
    "MAX_IMAGE_PIXELS",
    "MAX_UPLOAD_BYTES",
    "PILLOW_FORMATS",
    "ImageTooLargeError",
    "UnusableImageError",
    "decode_image",
    "image_format_extension",
    "image_from_any",
    "image_from_bytes",
    "image_from_path",
    "is_file_object",
    "is_image_file",
    "read_file_object",
    "usable_image_extension",
]

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_IMAGE_PIXELS = 50_000_000

# HEIC is what iPhones save by default; Pillow reads it only through this plugin. (AVIF is built into Pillow.)
pillow_heif.register_heif_opener()

# The accepted formats: Pillow's name -> (the name users know, the file suffixes it comes under; the first
# is the one a file of it is saved under). Only formats a phone, camera or browser produces: restricting
# Image.open to these also keeps exotic plugins (EPS hands files to Ghostscript, for one) away from
# untrusted uploads.
_FORMATS = {
    "JPEG": ("JPEG", ("jpg", "jpeg", "jpe", "jfif")),
    "PNG": ("PNG", ("png",)),
    "HEIF": ("HEIC", ("heic", "heif", "hif")),
    "AVIF": ("AVIF", ("avif",)),
    "WEBP": ("WebP", ("webp",)),
    "GIF": ("GIF", ("gif",)),
    "BMP": ("BMP", ("bmp",)),
    "TIFF": ("TIFF", ("tiff", "tif")),
}
# What Image.open may try on untrusted bytes: only these plugins (EPS, for one, hands files to Ghostscript).
PILLOW_FORMATS = tuple(_FORMATS)
# Pillow format -> the extension a file of it is saved under. MPO is how Pillow reports many camera
# JPEGs; it has no opener of its own (the JPEG plugin returns it).
IMAGE_FORMATS = {fmt: suffixes[0] for fmt, (_, suffixes) in _FORMATS.items()} | {"MPO": "jpg"}
# File suffixes that count as images when a folder is scanned (training photos, the label store, the CLI).
IMAGE_SUFFIXES = frozenset(f".{suffix}" for _, suffixes in _FORMATS.values() for suffix in suffixes)
_NAMES = [name for name, _ in _FORMATS.values()]
ACCEPTED_FORMATS_TEXT = ", ".join(_NAMES[:-1]) + " or " + _NAMES[-1]  # "JPEG, PNG, ... or TIFF"

# Anything a Python user may hand to image_from_any.
ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, Image.Image, np.ndarray]

# What Pillow's decoders raise on bad input. Anything from this list while
# reading untrusted bytes means "the file is damaged", not "picsort has a bug".
# (RuntimeError: Pillow's AVIF reader, for data its AV1 decoder cannot decode.)
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    RuntimeError,
    struct.error,
    zlib.error,
)
# Image.open already turns SyntaxError/IndexError/TypeError/struct.error into
# "unidentified"; what still escapes is a recognised but broken header.
_HEADER_ERRORS = (OSError, ValueError, EOFError, RuntimeError, zlib.error)
_BOMB_ERRORS = (Image.DecompressionBombError, Image.DecompressionBombWarning)

# EXIF orientation -> the turn that puts the picture upright (the table of Pillow's ImageOps.exif_transpose,
# which cannot be used here: it reads the tag from the image it turns, and the picture is turned after
# it has been converted and reduced, when it is small).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Wide (16/32-bit, float) pixels are scaled to 8 bit this many at a time, so the temporaries stay a few MB.
_STRIP_PIXELS = 1 << 20


class UnusableImageError(ValueError):
    """An image cannot be used; the message is meant for the user."""


class ImageTooLargeError(UnusableImageError):
    """An image over picsort's limits: too many bytes (MAX_UPLOAD_BYTES) or pixels (MAX_IMAGE_PIXELS)."""


@dataclass(frozen=True)
class DecodedImage:
    """A picture as `decode_image` made it, and whether it was decoded reduced: smaller than the picture it was
    read from, because `min_side` allowed it (the classifier decodes such a photo whole when its answer is near
    an edge)."""

    image: Image.Image
    reduced: bool


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether a folder scan should take `path` for an image: an image suffix and not hidden (by name only).

    Nothing is read: whether it really is one is up to `image_from_path`, which also refuses anything that
    is not a regular file.
    """
    name = os.path.basename(os.fspath(path))
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def image_from_any(item: ImageInput, min_side: int | None = None, *, name: str | None = None) -> Image.Image:
    """An upright 8-bit RGB image from whatever a Python user has at hand.

    `item` may be a path (str or PathLike), the bytes of an image file (bytes, bytearray, memoryview), a binary
    file object, a PIL image in any mode, or a numpy array (HxW grey, HxWx3 RGB or HxWx4 RGBA; uint8, or
    wider integers and floats scaled as a 16-bit or float file would be). EXIF orientation, the scaling
    of wide pixels and the limits are the same whatever the input. `name` is what messages call the image
    (default: its file name where it has one). With `min_side`, see `image_from_bytes`.
    Raises `UnusableImageError` for an image that cannot be used, `TypeError` for anything else.
    """
    return decode_image(item, min_side, name=name).image


def decode_image(item: ImageInput, min_side: int | None = None, *, name: str | None = None) -> DecodedImage:
    """`image_from_any`'s picture, and whether `min_side` had it decoded reduced."""
    if isinstance(item, Image.Image):
        return _decode_pil(item, min_side, name)
    if isinstance(item, np.ndarray):
        return _decode_array(item, min_side, name or "image")
    if isinstance(item, (bytes, bytearray, memoryview)):
        return _decode_bytes(item, name or "image", min_side)
    if isinstance(item, str) and is_url(item):  # s3://bucket/photo.jpg and other fsspec URLs (picsort.foundation.remote)
        from picsort.foundation.remote import UnreadableURLError, read_url

        try:
            data = read_url(item, MAX_UPLOAD_BYTES + 1)
        except UnreadableURLError as problem:
            raise UnusableImageError(str(problem)) from problem
        return _decode_bytes(data, name or item.rstrip("/").rsplit("/", 1)[-1], min_side)
    if isinstance(item, (str, os.PathLike)):
        return _decode_path(item, min_side)
    if is_file_object(item):
        data, file_name = read_file_object(item)
        return _decode_bytes(data, name or file_name, min_side)
    raise TypeError(f"cannot read an image from a {type(item).__module__}.{type(item).__qualname__}: give a path, "
                    "bytes, a binary file object, a PIL image or a numpy array")


def is_file_object(item: object) -> bool:
    """Whether `image_from_any` takes `item` for an open file (anything with a `read` method)."""
    return callable(getattr(item, "read", None))


def read_file_object(file: BinaryIO) -> tuple[bytes, str]:
    """The bytes an open binary file has left (one byte over the size limit at most) and the name messages use.

    For a caller that needs the picture twice: a file can be read only once.
    """
    data = file.read(MAX_UPLOAD_BYTES + 1)  # one byte over is enough to say it is too large
    if isinstance(data, str):
        raise TypeError("the file was opened in text mode: open it with open(path, 'rb')")
    file_name = getattr(file, "name", None)
    return data, os.path.basename(file_name) if isinstance(file_name, str) else "image"


def image_from_bytes(
    data: bytes | bytearray | memoryview, name: str = "image", min_side: int | None = None
) -> Image.Image:
    """Decode uploaded bytes into a fully loaded, upright, 8-bit RGB image (first frame).

    ``name`` is only used in error messages. With ``min_side`` the image may come out smaller than
    stored, but never with a side under ``min_side`` (nor larger than stored): the smallest such image
    Pillow can decode or reduce to cheaply. Raises :class:`UnusableImageError` for empty, too big,
    unreadable, damaged or too-many-pixel files.
    """
    return _decode_bytes(data, name, min_side).image


def _decode_bytes(data: bytes | bytearray | memoryview, name: str, min_side: int | None) -> DecodedImage:
    raw = _checked_bytes(data, name)
    label = _display_name(name)
    with _bombs_refused(label):
        im = _open(raw, name)
        # Size comes from the header: refuse before any pixels are decoded.
        _check_pixels(im.size, label)
        stored_size = im.size
        if min_side:
            # JPEG decodes at 1/2, 1/4 or 1/8 scale straight from the DCT; HEIC may use an embedded
            # thumbnail that is large enough; other formats ignore this.
            im.draft("RGB", (min_side, min_side))
        try:
            im.load()
        except _BOMB_ERRORS:
            raise
        except _DECODE_ERRORS as exc:
            raise UnusableImageError(f"{label} is damaged or incomplete") from exc
        # Some formats (GIF frames, TIFF tiles) can only reveal their
        # true extent while decoding.
        _check_pixels(im.size, label)
    return _finished(im, min_side, label, stored_size, decoded_here=True)


def image_from_path(path: str | os.PathLike[str], min_side: int | None = None) -> Image.Image:
    """Read an image file from disk with the same checks as :func:`image_from_bytes`.

    Only a regular file is read (a pipe or a device named like a photo would block or never end), and
    never more than one byte over the size limit.
    """
    return _decode_path(path, min_side).image


def _decode_path(path: str | os.PathLike[str], min_side: int | None) -> DecodedImage:
    path = Path(path)
    label = _display_name(path.name)
    try:
        # Non-blocking, so that opening a FIFO returns at once instead of waiting for a writer.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(file.fileno())
            if stat.S_ISDIR(info.st_mode):
                raise UnusableImageError(f"{label} is a folder, not an image")
            if not stat.S_ISREG(info.st_mode):
                raise UnusableImageError(f"{label} is not a regular file (a pipe, device or socket), not an image")
            # Don't read a 4 GB file into memory just to reject it.
            if info.st_size > MAX_UPLOAD_BYTES:
                raise ImageTooLargeError(_too_many_bytes_message(label))
            data = file.read(MAX_UPLOAD_BYTES + 1)  # it may have grown since
    except FileNotFoundError as exc:
        raise UnusableImageError(f"{label} was not found") from exc
    except IsADirectoryError as exc:
        raise UnusableImageError(f"{label} is a folder, not an image") from exc
    except OSError as exc:
        raise UnusableImageError(f"{label} could not be read") from exc
    return _decode_bytes(data, path.name, min_side)


def image_format_extension(data: bytes | bytearray | memoryview, name: str = "image") -> str:
    """Lowercase file extension ("jpg", "png", "heic", ...: a value of `IMAGE_FORMATS`) for the image's format."""
    raw = _checked_bytes(data, name)
    with _bombs_refused(_display_name(name)):
        im = _open(raw, name)
    return IMAGE_FORMATS[im.format]


def usable_image_extension(data: bytes | bytearray | memoryview, name: str = "image") -> str:
    """`image_format_extension` of `data` if it is an image picsort can use, else UnusableImageError naming the
    problem (ImageTooLargeError when it is over the limits).

    The answer to "is this an image" for whatever keeps a file (a download, a photo gathered from a folder or
    a labels zip): every check `image_from_bytes` makes, with the whole picture decoded, so a photo cut short
    is refused too and nothing is kept that the app or training cannot read.
    """
    image_from_bytes(data, name)
    return image_format_extension(data, name)


def _decode_pil(source: Image.Image, min_side: int | None, name: str | None) -> DecodedImage:
    """The RGB image for a PIL image the caller holds (left as it is, apart from being loaded)."""
    label = _display_name(name or os.path.basename(getattr(source, "filename", "") or "") or "image")
    if source.width == 0 or source.height == 0:
        raise UnusableImageError(f"{label} is empty ({source.width}×{source.height} pixels)")
    with _bombs_refused(label):
        _check_pixels(source.size, label)
        try:
            source.load()  # an image from Image.open is decoded only now
        except _BOMB_ERRORS:
            raise
        except _DECODE_ERRORS as exc:
            raise UnusableImageError(f"{label} is damaged or incomplete") from exc
    return _finished(source, min_side, label)


def _decode_array(array: np.ndarray, min_side: int | None, name: str) -> DecodedImage:
    """The RGB image for a numpy array of pixels: HxW, HxWx1, HxWx3 or HxWx4 (alpha dropped)."""
    label = _display_name(name)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise UnusableImageError(f"{label} is a numpy array of shape {array.shape}, not an image: "
                                 "give HxW (grey), HxWx3 (RGB) or HxWx4 (RGBA)")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise UnusableImageError(f"{label} is empty ({array.shape[1]}×{array.shape[0]} pixels)")
    _check_pixels((array.shape[1], array.shape[0]), label)
    if array.dtype.kind not in "buif":
        raise UnusableImageError(f"{label} is a numpy array of {array.dtype}, not of pixel values: "
                                 "give uint8 (or other integers or floats)")
    if array.ndim == 3:
        array = array[:, :, :3]  # RGBA: alpha dropped, as for an RGBA file
    if array.dtype == np.uint8:
        pixels = array
    elif array.dtype == np.bool_:
        pixels = array.astype(np.uint8) * 255
    else:
        def strips() -> Iterator[np.ndarray]:
            for top in range(0, len(array), rows):
                yield array[top:top + rows]

        rows = max(1, _STRIP_PIXELS // (array.size // len(array)))
        pixels = _wide_to_uint8(strips, array.shape, sixteen_bit=array.dtype == np.uint16,
                                is_float=array.dtype.kind == "f", label=label)
    return _finished(Image.fromarray(np.ascontiguousarray(pixels)), min_side, label)


def _finished(source: Image.Image, min_side: int | None, label: str,
              stored_size: tuple[int, int] | None = None, decoded_here: bool = False) -> DecodedImage:
    """A new upright RGB image from a loaded image, reduced towards `min_side` on the way.

    `stored_size`: the picture's size before a draft decoded it smaller (default: `source.size`).
    `decoded_here`: `source` is this module's own decoder object, which nobody else holds.
    """
    stored_width, stored_height = stored_size or source.size
    turn = _upright_turn(source)
    # The largest whole step down that keeps both sides >= min_side.
    factor = max(1, min(source.size) // min_side) if min_side else 1
    try:
        if factor > 1 and source.mode not in ("L", "RGB") and not _is_wide(source.mode):
            im = _reduced_in_strips(source, factor, label)
        else:
            im = _to_8bit(source, label)
            if factor > 1:
                im = im.reduce(factor)
        if turn is not None:
            im = im.transpose(turn)
        # Never hand back the caller's own image, nor a decoder object still tied to its file (GIF, TIFF, MPO
        # frames): a new, detached picture. A decoder object done with its file is handed back as it is, since a
        # copy would double the memory of a photo decoded whole.
        detached = decoded_here and getattr(source, "fp", None) is None
        im = im.convert("RGB") if im.mode != "RGB" or (im is source and not detached) else im
    except UnusableImageError:
        raise  # already in plain words (a ValueError, which the next line would take for a decoder's)
    except _DECODE_ERRORS as exc:
        raise UnusableImageError(f"{label} uses a colour format we can't read") from exc
    return DecodedImage(im, reduced=im.width * im.height < stored_width * stored_height)


def _reduced_in_strips(source: Image.Image, factor: int, label: str) -> Image.Image:
    """`_to_8bit(source).reduce(factor)`, converted a strip of rows at a time: only the small result is whole."""
    width, height = source.size
    rows = factor * max(1, _STRIP_PIXELS // (width * factor))  # whole steps, so strips reduce as the whole would
    out = None
    for top in range(0, height, rows):
        part = _to_8bit(source.crop((0, top, width, min(top + rows, height))), label).reduce(factor)
        if out is None:
            out = Image.new(part.mode, (-(-width // factor), -(-height // factor)))
        out.paste(part, (0, top // factor))
    return out


def _is_wide(mode: str) -> bool:
    return mode.startswith("I;16") or mode in ("I", "F")


def _upright_turn(im: Image.Image) -> Image.Transpose | None:
    try:
        return _UPRIGHT.get(im.getexif().get(ExifTags.Base.Orientation))
    except _DECODE_ERRORS:
        # Broken EXIF in an otherwise fine photo: keep the pixels as stored
        # rather than refusing the upload over a metadata problem.
        return None


def _to_8bit(im: Image.Image, label: str) -> Image.Image:
    """``im`` as an "L" or "RGB" image with the same look (possibly ``im`` itself), ready to reduce."""
    mode = im.mode
    if mode in ("L", "RGB"):
        return im
    if _is_wide(mode):
        # Pillow's own convert clips everything above 255 to white.
        width, height = im.size
        rows = max(1, _STRIP_PIXELS // width)

        def strips() -> Iterator[np.ndarray]:
            for top in range(0, height, rows):
                yield np.asarray(im.crop((0, top, width, min(top + rows, height))))

        values = _wide_to_uint8(strips, (height, width), sixteen_bit=mode.startswith("I;16"), is_float=mode == "F",
                                label=label)
        return Image.fromarray(values)
    if mode in ("1", "LA"):
        # The grey convert("RGB") would give, on a third of the memory.
        return im.convert("L")
    if mode == "P" and "transparency" in im.info:
        # Same colours as a direct convert("RGB") (what fastai does), without
        # Pillow's warning about byte-string palette transparency.
        return im.convert("RGBA").convert("RGB")
    # RGBA: plain convert drops alpha exactly like fastai's
    # PILImage.create, so the app sees what training saw.
    return im.convert("RGB")


def _wide_to_uint8(strips: Callable[[], Iterator[np.ndarray]], shape: tuple[int, ...], *, sixteen_bit: bool,
                   is_float: bool, label: str) -> np.ndarray:
    """Map wide pixels onto 0..255; `strips()` yields them a few rows at a time, in order (twice if need be).

    16-bit pixels use their full range. 32-bit integers and floats carry no statement of their range, so
    go by the values: data that fits a conventional range (0..1 for floats, 0..255, 0..65535 for
    integers) keeps its meaning; anything else is stretched min..max. NaN and infinities take the ends of
    that range; floats with no finite value at all are no picture (UnusableImageError).
    """
    out = np.empty(shape, np.uint8)
    if sixteen_bit:
        def scale(block: np.ndarray) -> np.ndarray:
            return (block.astype(np.uint32) * 255 + 32767) // 65535  # round(v * 255 / 65535)
    else:
        lo, hi = math.inf, -math.inf
        for block in strips():
            finite = block[np.isfinite(block)] if is_float else block
            if finite.size:
                lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
        if lo > hi:  # a black picture would be answered as if it were one
            raise UnusableImageError(f"{label} has no pixel values: every one is NaN or infinite")
        if lo >= 0 and is_float and hi <= 1:
            factor, offset = 255.0, 0.0
        elif lo >= 0 and hi <= 255:
            factor, offset = 1.0, 0.0
        elif lo >= 0 and not is_float and hi <= 65535:
            factor, offset = 255 / 65535, 0.0
        elif hi > lo:
            factor, offset = 255 / (hi - lo), lo
        else:
            factor, offset = 1.0, 0.0  # constant image outside 0..255: clipped below

        def scale(block: np.ndarray) -> np.ndarray:
            values = np.nan_to_num(block.astype(np.float32), nan=lo, posinf=hi, neginf=lo)
            values -= offset
            values *= factor
            return np.clip(np.rint(values, out=values), 0, 255, out=values)
    row = 0
    for block in strips():
        out[row:row + len(block)] = scale(block)
        row += len(block)
    return out


@contextlib.contextmanager
def _bombs_refused(label: str):
    """Turn Pillow's decompression-bomb warning and error into UnusableImageError, for this call only."""
    # Pillow only *warns* about mid-sized bombs; make that an error here
    # (scoped to this call, Pillow's global limit is left alone).
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except _BOMB_ERRORS as exc:
        raise ImageTooLargeError(_too_large_message(label, str(exc))) from exc


def _checked_bytes(data: bytes | bytearray | memoryview, name: str) -> bytes:
    """Bytes of ``data`` after the cheap checks (type, empty, byte-size limit)."""
    if isinstance(data, str):
        # A str here is a programming error (e.g. a path passed by mistake).
        raise TypeError("image data must be bytes, bytearray or memoryview, not str")
    view = memoryview(data)  # TypeError for anything that isn't a buffer
    label = _display_name(name)
    if view.nbytes == 0:
        raise UnusableImageError(f"{label} is empty")
    if view.nbytes > MAX_UPLOAD_BYTES:
        raise ImageTooLargeError(_too_many_bytes_message(label))
    # ipywidgets 8 hands uploads over as memoryview; Pillow wants a file.
    return view.tobytes()


def _open(raw: bytes, name: str) -> Image.Image:
    """Identify the format and read the header only."""
    label = _display_name(name)
    try:
        im = Image.open(io.BytesIO(raw), formats=PILLOW_FORMATS)
    except UnidentifiedImageError as exc:
        if _has_a_signature_we_read(raw):
            # One of our formats by its first bytes, that its reader gave up on: a photo cut short (an AVIF
            # cut anywhere past its header, for one), not some other kind of file.
            raise UnusableImageError(f"{label} is damaged or incomplete") from exc
        raise UnusableImageError(
            f"{label} is not an image (or not a format we can read). "
            f"Please use a {ACCEPTED_FORMATS_TEXT} file."
        ) from exc
    except _BOMB_ERRORS:
        raise
    except _HEADER_ERRORS as exc:
        # Recognised as an image format, but the header itself is broken.
        raise UnusableImageError(f"{label} is damaged or incomplete") from exc
    return im


def _has_a_signature_we_read(raw: bytes) -> bool:
    """Whether `raw` starts the way a file of an accepted format does (each Pillow plugin's own check, on the
    16 bytes Image.open gives it)."""
    for fmt in PILLOW_FORMATS:
        accept = Image.OPEN.get(fmt, (None, None))[1]
        answer = accept(raw[:16]) if accept is not None else False
        if answer and not isinstance(answer, str):  # a str: the format's support is missing from this Pillow
            return True
    return False


def _check_pixels(size: tuple[int, int], label: str) -> None:
    width, height = size
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageTooLargeError(_too_large_message(label, pixels=width * height))


def _too_many_bytes_message(label: str) -> str:
    return f"{label} is larger than the {human_bytes(MAX_UPLOAD_BYTES)} limit"


# ---- smaller copies to show: a card's picture, the "Why?" overlay -----------------------------------------
def shrunk(image: Image.Image, size: int) -> Image.Image:
    """`image` scaled down to at most `size` pixels on its longest side (the same image if already small)."""
    scale = size / max(image.size)
    if scale >= 1:
        return image
    width, height = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    # reducing_gap: shrink big photos by whole factors first; much faster, no visible difference.
    return image.resize((width, height), Image.BILINEAR, reducing_gap=3.0)


def jpeg(image: Image.Image, size: int, quality: int = 85) -> tuple[bytes, tuple[int, int]]:
    """`image` reduced to `size` and encoded as JPEG; returns the bytes and the encoded size."""
    small = shrunk(image, size)
    buffer = io.BytesIO()
    small.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue(), small.size


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
    """The user's file name as a message quotes it."""
    return f"'{shown_name(name)}'"
