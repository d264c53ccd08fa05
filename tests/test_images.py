"""Tests for picsort.images: every bad upload gets a plain message, every odd image becomes RGB."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from picsort import images
from picsort.images import (
    UnusableImageError,
    image_format_extension,
    image_from_any,
    image_from_bytes,
    image_from_path,
)


def encode(im: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def jpeg_bytes(size=(40, 20), color="red") -> bytes:
    return encode(Image.new("RGB", size, color), "JPEG")


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def blank_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of ``width`` x ``height``: tiny file, huge image (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    row = bytes(1 + (width + 7) // 8)  # filter byte + packed zero bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def assert_rgb(im: Image.Image, size: tuple[int, int]) -> None:
    assert im.mode == "RGB"
    assert im.size == size
    # Fully decoded and detached from the upload buffer.
    assert getattr(im, "fp", None) is None
    np.asarray(im)


def close_to(actual, expected, tolerance=12) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected))


# --- bad uploads -----------------------------------------------------------


def test_limits_are_as_documented():
    assert images.MAX_UPLOAD_BYTES == 20 * 1024 * 1024
    assert images.MAX_IMAGE_PIXELS == 50_000_000


def test_empty_bytes():
    with pytest.raises(UnusableImageError, match=r"^'photo\.jpg' is empty$"):
        image_from_bytes(b"", "photo.jpg")


def test_text_file_is_not_an_image():
    with pytest.raises(UnusableImageError) as info:
        image_from_bytes(b"meow meow, definitely a cat\n" * 10, "cat.txt")
    assert "'cat.txt' is not an image (or not a format we can read)" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_unsupported_image_format_is_refused_in_plain_words():
    ppm = encode(Image.new("RGB", (4, 4)), "PPM")
    with pytest.raises(UnusableImageError, match="not a format we can read"):
        image_from_bytes(ppm, "old.ppm")


def test_truncated_jpeg_is_damaged():
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    data = encode(noisy, "JPEG")
    with pytest.raises(UnusableImageError, match=r"^'half\.jpg' is damaged or incomplete$"):
        image_from_bytes(data[: len(data) // 2], "half.jpg")


def test_truncated_png_is_damaged():
    noisy = Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8))
    data = encode(noisy, "PNG")
    with pytest.raises(UnusableImageError, match="is damaged or incomplete"):
        image_from_bytes(data[: len(data) // 2], "half.png")


def test_truncated_files_are_not_silently_accepted():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_oversize_bytes(monkeypatch):
    monkeypatch.setattr(images, "MAX_UPLOAD_BYTES", 1000)
    data = encode(Image.new("RGB", (64, 64)), "BMP")
    assert len(data) > 1000
    with pytest.raises(UnusableImageError, match=r"^'big\.bmp' is larger than the .* limit$"):
        image_from_bytes(data, "big.bmp")


def test_oversize_bytes_message_names_the_real_limit():
    data = bytearray(images.MAX_UPLOAD_BYTES + 1)
    with pytest.raises(UnusableImageError, match=r"^'huge\.jpg' is larger than the 20 MB limit$"):
        image_from_bytes(data, "huge.jpg")


@pytest.mark.parametrize(
    ("width", "height", "megapixels"),
    [
        (8000, 7000, "56"),  # over our limit, under Pillow's warning threshold
        (10000, 10000, "100"),  # Pillow would only warn (DecompressionBombWarning)
        (20000, 20000, "400"),  # Pillow raises DecompressionBombError itself
    ],
)
def test_decompression_bombs_are_too_large(width, height, megapixels, monkeypatch):
    data = blank_png(width, height)
    assert len(data) < 100_000  # tiny file...
    pillow_limit = Image.MAX_IMAGE_PIXELS
    filters_before = list(warnings.filters)

    # ...that must be refused from its header, before any pixel is decoded.
    def no_decoding(self, *args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(UnusableImageError) as info:
        image_from_bytes(data, "bomb.png")
    assert str(info.value) == (
        f"'bomb.png' is too large: {megapixels} megapixels, the limit is 50"
    )
    assert Image.MAX_IMAGE_PIXELS == pillow_limit
    assert warnings.filters == filters_before


def test_pillow_bomb_error_becomes_plain_message(monkeypatch):
    # Even if another part of the program lowers Pillow's own limit.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(UnusableImageError, match=r"is too large: 0\.1 megapixels, the limit is 50"):
        image_from_bytes(encode(Image.new("L", (300, 300)), "PNG"), "x.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 60_000)
    with pytest.raises(UnusableImageError, match=r"is too large: 0\.1 megapixels, the limit is 50"):
        image_from_bytes(encode(Image.new("L", (300, 300)), "PNG"), "x.png")


def test_just_over_the_pixel_limit(monkeypatch):
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 99)
    image_from_bytes(encode(Image.new("L", (9, 11)), "PNG"))
    with pytest.raises(UnusableImageError, match="is too large"):
        image_from_bytes(encode(Image.new("L", (10, 10)), "PNG"))


def test_control_characters_in_names_are_not_echoed():
    with pytest.raises(UnusableImageError) as info:
        image_from_bytes(b"", "evil\n\x1b[31mname.png")
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)


def test_str_is_a_programming_error():
    with pytest.raises(TypeError):
        image_from_bytes("not bytes")  # type: ignore[arg-type]


# --- valid but unusual images ----------------------------------------------


def test_plain_jpeg_from_bytes_bytearray_and_memoryview():
    data = jpeg_bytes()
    for form in (data, bytearray(data), memoryview(data)):
        im = image_from_bytes(form, "x.jpg")
        assert_rgb(im, (40, 20))
        assert close_to(im.getpixel((20, 10)), (255, 0, 0))


def test_exif_orientation_6_is_rotated():
    # Red top-left corner; Orientation=6 means "rotate 90 degrees clockwise to view".
    im = Image.new("RGB", (40, 20), "blue")
    im.paste((255, 0, 0), (0, 0, 20, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(im, "JPEG", exif=exif, quality=95)

    out = image_from_bytes(data, "phone.jpg")
    assert_rgb(out, (20, 40))
    assert close_to(out.getpixel((15, 5)), (255, 0, 0)), "red corner should land top-right"
    assert close_to(out.getpixel((4, 5)), (0, 0, 255))
    assert close_to(out.getpixel((15, 35)), (0, 0, 255))


def test_cmyk_jpeg():
    data = encode(Image.new("CMYK", (30, 20), (0, 255, 255, 0)), "JPEG")
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = image_from_bytes(data)
    assert_rgb(out, (30, 20))
    assert close_to(out.getpixel((15, 10)), (255, 0, 0))


def test_16_bit_gray_png_is_scaled_not_clipped():
    values = np.array([[0, 32768, 65535]], np.uint16)
    data = encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")
    out = image_from_bytes(data)
    assert_rgb(out, (3, 1))
    assert out.getpixel((0, 0)) == (0, 0, 0)
    assert out.getpixel((1, 0)) == (128, 128, 128)  # mid-gray, not white
    assert out.getpixel((2, 0)) == (255, 255, 255)


@pytest.mark.parametrize("mode", ["I;16B", "I;16L"])
def test_16_bit_byte_orders(mode):
    out = image_from_any(Image.new(mode, (2, 2), 32768))
    assert out.getpixel((0, 0)) == (128, 128, 128)


def test_32_bit_integer_tiff():
    values = np.array([[0, 100, 255]], np.int32)
    data = encode(Image.fromarray(values), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "I"
    out = image_from_bytes(data)
    assert_rgb(out, (3, 1))
    # Values already in 0..255 keep their meaning.
    assert [out.getpixel((x, 0))[0] for x in range(3)] == [0, 100, 255]


def test_32_bit_integer_ranges():
    sixteen = image_from_any(Image.fromarray(np.array([[0, 32768, 65535]], np.int32)))
    assert [sixteen.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]
    signed = image_from_any(Image.fromarray(np.array([[-1000, 0, 1000]], np.int32)))
    assert [signed.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_float_tiff():
    values = np.array([[0.0, 0.5, 1.0]], np.float32)
    data = encode(Image.fromarray(values), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "F"
    out = image_from_bytes(data)
    assert_rgb(out, (3, 1))
    assert [out.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_float_with_odd_range_and_nan():
    values = np.array([[-2.0, 0.0, 2.0, np.nan]], np.float32)
    out = image_from_any(Image.fromarray(values))
    assert [out.getpixel((x, 0))[0] for x in range(4)] == [0, 128, 255, 0]


@pytest.mark.parametrize(
    ("mode", "color", "expected"),
    [
        ("L", 77, (77, 77, 77)),
        ("1", 1, (255, 255, 255)),
        ("RGBA", (10, 20, 30, 0), (10, 20, 30)),
        ("LA", (90, 0), (90, 90, 90)),
    ],
)
def test_simple_modes(mode, color, expected):
    data = encode(Image.new(mode, (9, 7), color), "PNG")
    assert Image.open(io.BytesIO(data)).mode == mode
    out = image_from_bytes(data)
    assert_rgb(out, (9, 7))
    assert out.getpixel((4, 3)) == expected


def test_rgba_matches_plain_convert_like_fastai():
    rng = np.random.default_rng(2)
    rgba = Image.fromarray(rng.integers(0, 255, (16, 16, 4), np.uint8), "RGBA")
    out = image_from_bytes(encode(rgba, "PNG"))
    assert np.array_equal(np.asarray(out), np.asarray(rgba.convert("RGB")))


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency(fmt):
    pal = Image.new("P", (8, 6), 0)
    pal.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    pal.paste(1, (0, 0, 4, 6))
    data = encode(pal, fmt, transparency=0)
    opened = Image.open(io.BytesIO(data))
    assert opened.mode == "P" and "transparency" in opened.info
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = image_from_bytes(data)
    assert_rgb(out, (8, 6))
    assert out.getpixel((1, 1)) == (0, 255, 0)
    assert out.getpixel((6, 1)) == (255, 0, 0)


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (12, 10), c) for c in ("red", "lime", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(buf.getvalue())).n_frames == 3
    out = image_from_bytes(buf.getvalue(), "anim.gif")
    assert_rgb(out, (12, 10))
    assert close_to(out.getpixel((5, 5)), (255, 0, 0), tolerance=0)


def test_very_large_image():
    data = encode(Image.new("RGB", (6000, 4000), "orange"), "JPEG")
    out = image_from_bytes(data, "big.jpg")
    assert_rgb(out, (6000, 4000))


def test_one_pixel_image():
    out = image_from_bytes(encode(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"))
    assert_rgb(out, (1, 1))
    assert out.getpixel((0, 0)) == (1, 2, 3)


# --- files and formats -------------------------------------------------------


def test_image_from_path(tmp_path):
    path = tmp_path / "dog.png"
    path.write_bytes(encode(Image.new("RGB", (5, 4), "white"), "PNG"))
    assert_rgb(image_from_path(path), (5, 4))
    assert_rgb(image_from_path(str(path)), (5, 4))


def test_image_from_path_problems_are_plain(tmp_path):
    with pytest.raises(UnusableImageError, match=r"^'nope\.jpg' was not found$"):
        image_from_path(tmp_path / "nope.jpg")
    with pytest.raises(UnusableImageError, match="is a folder"):
        image_from_path(tmp_path)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(UnusableImageError, match=r"^'notes\.txt' is not an image"):
        image_from_path(text)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(UnusableImageError, match=r"^'empty\.png' is empty$"):
        image_from_path(tmp_path / "empty.png")


def test_image_from_path_checks_size_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_UPLOAD_BYTES", 10)
    path = tmp_path / "big.png"
    path.write_bytes(encode(Image.new("RGB", (5, 4)), "PNG"))
    with pytest.raises(UnusableImageError, match="larger than"):
        image_from_path(path)


def mpo_bytes() -> bytes:
    buf = io.BytesIO()
    first = Image.new("RGB", (8, 8), "red")
    first.save(buf, "MPO", save_all=True, append_images=[Image.new("RGB", (8, 8), "blue")])
    return buf.getvalue()


@pytest.mark.parametrize(
    ("fmt", "ext"),
    [("JPEG", "jpg"), ("PNG", "png"), ("GIF", "gif"), ("WEBP", "webp"), ("BMP", "bmp"), ("TIFF", "tiff")],
)
def test_image_format_extension(fmt, ext):
    data = encode(Image.new("RGB", (8, 8), "red"), fmt)
    assert image_format_extension(data) == ext
    assert image_format_extension(memoryview(data)) == ext
    assert_rgb(image_from_bytes(data), (8, 8))


def test_camera_mpo_jpeg_is_a_jpg():
    data = mpo_bytes()
    assert Image.open(io.BytesIO(data)).format == "MPO"
    assert image_format_extension(data) == "jpg"
    out = image_from_bytes(data)
    assert_rgb(out, (8, 8))
    assert close_to(out.getpixel((4, 4)), (255, 0, 0))


@pytest.mark.parametrize("data", [b"", b"plain text, not an image"])
def test_image_format_extension_refuses_non_images(data):
    with pytest.raises(UnusableImageError):
        image_format_extension(data)
