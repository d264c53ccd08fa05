"""Tests for picsort.photos.images: every bad upload gets a plain message, every odd image becomes RGB."""

from __future__ import annotations

import io
import os
import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from picsort.photos import images
from picsort.photos.images import (
    ImageTooLargeError,
    UnusableImageError,
    decode_image,
    image_format_extension,
    image_from_any,
    image_from_bytes,
    image_from_path,
    usable_image_extension,
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


def test_the_size_limit_the_page_states_is_the_one_enforced():
    from picsort.app.page import ClassifierApp

    stated = ClassifierApp.limits_text()
    assert "up to 20 MB each" in stated and images.MAX_UPLOAD_BYTES == 20 * 1024 * 1024
    with pytest.raises(UnusableImageError, match="larger than the 20 MB limit"):
        image_from_bytes(b"\xff\xd8" + bytes(images.MAX_UPLOAD_BYTES - 1), "big.jpg")


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


# --- HEIC and AVIF, the format table -------------------------------------------


def two_colour_picture(size=(64, 48)) -> Image.Image:
    """Red left half, blue right half: survives lossy coding well enough to check the layout."""
    im = Image.new("RGB", size, "blue")
    im.paste((255, 0, 0), (0, 0, size[0] // 2, size[1]))
    return im


@pytest.mark.parametrize(("fmt", "suffix"), [("HEIF", "heic"), ("AVIF", "avif")])
def test_heic_and_avif_are_read_from_bytes_and_files(fmt, suffix, tmp_path):
    # HEIC is written by pillow-heif's encoder, AVIF by Pillow's own (pillow-heif 1.x no longer encodes AVIF).
    data = encode(two_colour_picture(), fmt, quality=90)
    path = tmp_path / f"phone.{suffix}"
    path.write_bytes(data)
    for im in (image_from_bytes(data, f"phone.{suffix}"), image_from_path(path), image_from_any(path)):
        assert_rgb(im, (64, 48))
        assert close_to(im.getpixel((10, 24)), (255, 0, 0), tolerance=20)
        assert close_to(im.getpixel((54, 24)), (0, 0, 255), tolerance=20)
    assert image_format_extension(data) == suffix
    assert images.is_image_file(path)


def noisy_avif() -> bytes:
    return encode(Image.fromarray(np.random.default_rng(7).integers(0, 255, (64, 64, 3), np.uint8)), "AVIF",
                  quality=60)


def test_an_avif_cut_short_anywhere_is_damaged():
    data = noisy_avif()
    for length in (16, 40, 100, 300, len(data) // 2, len(data) - 100, len(data) - 1):
        for min_side in (None, 32):
            with pytest.raises(UnusableImageError, match=r"^'phone\.avif' is damaged or incomplete$"):
                image_from_bytes(data[:length], "phone.avif", min_side=min_side)


def test_an_avif_whose_picture_data_is_garbled_is_damaged():
    # Pillow's AVIF reader raises RuntimeError for picture data its AV1 decoder cannot decode.
    data = bytearray(noisy_avif())
    start = data.index(b"mdat") + 8
    data[start:start + 16] = b"\xff" * 16
    with pytest.raises(UnusableImageError, match=r"^'phone\.avif' is damaged or incomplete$"):
        image_from_bytes(bytes(data), "phone.avif")


@pytest.mark.parametrize("fmt", ["HEIF", "JPEG", "PNG", "WEBP"])
def test_any_photo_cut_just_after_its_signature_is_damaged_not_another_kind_of_file(fmt):
    data = encode(two_colour_picture(), fmt)
    with pytest.raises(UnusableImageError, match=r"is damaged or incomplete$"):
        image_from_bytes(data[:20], "photo")


def test_large_heic_is_reduced_for_the_model():
    data = encode(two_colour_picture((1600, 1200)), "HEIF", quality=50)
    im = image_from_bytes(data, "phone.heic", min_side=256)
    assert 256 <= min(im.size) < 512 and im.size[0] > im.size[1]
    assert close_to(im.getpixel((im.width // 4, im.height // 2)), (255, 0, 0), tolerance=20)


def test_one_list_of_formats_everywhere():
    for name in ("a.jpg", "b.JPEG", "c.png", "d.heic", "e.HEIF", "f.avif", "g.webp", "h.gif", "i.bmp", "j.tif",
                 "k.tiff", "/some/folder/l.jfif"):
        assert images.is_image_file(name), name
        assert images.is_image_file(Path(name)), name
    for name in ("notes.txt", "scan.pdf", "logo.svg", "photo", ".hidden.jpg", "photo.jpg.part"):
        assert not images.is_image_file(name), name
    text = images.ACCEPTED_FORMATS_TEXT
    for shown in ("JPEG", "PNG", "HEIC", "AVIF", "WebP", "GIF", "BMP", "TIFF"):
        assert shown in text
    # every format we accept has a suffix we scan for, and the message lists it
    assert set(images.IMAGE_FORMATS.values()) <= {s[1:] for s in images.IMAGE_SUFFIXES}
    with pytest.raises(UnusableImageError, match=re.escape(text)):
        image_from_bytes(b"%PDF-1.4 not an image", "scan.pdf")


def test_a_file_is_kept_only_if_the_whole_picture_decodes_under_the_limits():
    # What downloads and gathered photos ask: a header is not enough, and "too large" is told apart.
    assert usable_image_extension(encode(Image.new("RGB", (8, 8), "red"), "PNG"), "a.png") == "png"
    noisy = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)), "JPEG")
    half = noisy[: len(noisy) // 2]
    assert image_format_extension(half) == "jpg"  # the header alone reads fine
    with pytest.raises(UnusableImageError, match=r"^'half\.jpg' is damaged or incomplete$") as damaged:
        usable_image_extension(half, "half.jpg")
    assert not isinstance(damaged.value, ImageTooLargeError)
    with pytest.raises(ImageTooLargeError, match="is too large: 100 megapixels"):
        usable_image_extension(blank_png(10000, 10000), "bomb.png")
    with pytest.raises(ImageTooLargeError, match="larger than the 20 MB limit"):
        usable_image_extension(bytearray(images.MAX_UPLOAD_BYTES + 1), "huge.jpg")
    icon = encode(Image.new("RGB", (16, 16)), "ICO")  # Pillow reads it, picsort does not take it
    with pytest.raises(UnusableImageError, match="not an image"):
        usable_image_extension(icon, "favicon.ico")


# --- decoding at the size the model needs ---------------------------------------


def test_phone_jpeg_is_decoded_at_the_size_asked_for():
    data = encode(two_colour_picture((4032, 3024)), "JPEG", quality=90)
    full = image_from_bytes(data, "phone.jpg")
    assert_rgb(full, (4032, 3024))
    small = image_from_bytes(data, "phone.jpg", min_side=256)
    assert_rgb(small, (504, 378))  # 1/8 scale straight from the JPEG: both sides still >= 256
    assert close_to(small.getpixel((100, 189)), (255, 0, 0))
    assert close_to(small.getpixel((400, 189)), (0, 0, 255))
    # never below what was asked for, never larger than stored
    assert image_from_bytes(data, min_side=400).size == (1008, 756)
    assert image_from_bytes(data, min_side=5000).size == (4032, 3024)


def test_reduced_phone_jpeg_is_still_upright():
    im = two_colour_picture((4032, 3024))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view: red ends up on top
    out = image_from_bytes(encode(im, "JPEG", exif=exif, quality=90), min_side=256)
    assert_rgb(out, (378, 504))
    assert close_to(out.getpixel((189, 100)), (255, 0, 0))
    assert close_to(out.getpixel((189, 400)), (0, 0, 255))


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_other_formats_are_reduced_after_decoding(fmt):
    rng = np.random.default_rng(3)
    picture = Image.fromarray(rng.integers(0, 255, (1100, 2000, 3), np.uint8)).resize((2000, 1100))
    data = encode(picture, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    out = image_from_bytes(data, min_side=256)
    assert_rgb(out, (500, 275))  # reduced 4 times: the largest step keeping both sides >= 256
    expected = np.asarray(picture.reduce(4), np.int16)
    assert np.abs(np.asarray(out, np.int16) - expected).max() <= 1


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "1", "CMYK"])
def test_reducing_other_modes_gives_what_converting_the_whole_would(mode):
    rng = np.random.default_rng(6)
    picture = Image.fromarray(rng.integers(0, 255, (1101, 2003, 4), np.uint8), "RGBA")
    picture = picture.convert(mode) if mode != "P" else picture.convert("RGB").convert("P")
    if mode == "P":
        picture.info["transparency"] = 0
    out = image_from_any(picture, min_side=256)
    whole = picture.convert("RGBA").convert("RGB") if mode == "P" else picture.convert("RGB")
    assert_rgb(out, (501, 276))
    assert np.array_equal(np.asarray(out), np.asarray(whole.reduce(4)))


def test_16_bit_and_float_pictures_are_scaled_when_reduced():
    ramp = np.tile(np.linspace(0, 65535, 1200).astype(np.uint16), (600, 1))
    out = image_from_bytes(encode(Image.fromarray(ramp), "PNG"), min_side=256)
    assert_rgb(out, (600, 300))
    row = np.asarray(out)[150, :, 0].astype(int)
    assert row[0] <= 1 and row[-1] >= 254 and abs(row[300] - 128) <= 1  # the full range, not clipped to white
    floats = (ramp / 65535).astype(np.float32)
    out = image_from_bytes(encode(Image.fromarray(floats), "TIFF"), min_side=256)
    assert np.abs(np.asarray(out, int)[150, :, 0] - row).max() <= 1


def test_the_decoder_says_whether_it_decoded_a_picture_reduced(tmp_path):
    """The classifier decodes a photo whole again when a reduced one's answer is near an edge: it must know which."""
    phone = encode(two_colour_picture((4032, 3024)), "JPEG", quality=90)
    drafted = decode_image(phone, min_side=256)  # JPEG draft
    assert drafted.reduced and max(drafted.image.size) < 4032
    assert not decode_image(phone).reduced and decode_image(phone).image.size == (4032, 3024)
    assert not decode_image(phone, min_side=5000).reduced
    large_png = encode(two_colour_picture((1200, 800)), "PNG")
    assert decode_image(large_png, min_side=256).reduced  # reduced after decoding
    small = encode(two_colour_picture((300, 200)), "PNG")
    assert not decode_image(small, min_side=256).reduced
    # a picture handed over in memory: reduced from what the caller holds, which says nothing of an earlier decode
    reduced = decode_image(two_colour_picture((1200, 800)), min_side=256)
    assert reduced.reduced and reduced.image.size == (400, 267)  # 1/3: both sides stay >= 256
    assert not decode_image(reduced.image, min_side=256).reduced  # nothing larger is at hand
    (tmp_path / "phone.jpg").write_bytes(phone)
    assert decode_image(tmp_path / "phone.jpg", min_side=256) == drafted  # from a file: the same
    assert image_from_any(phone, min_side=256).size == drafted.image.size  # the picture alone


def test_small_pictures_are_left_as_they_are():
    data = encode(two_colour_picture((300, 200)), "PNG")
    assert image_from_bytes(data, min_side=256).size == (300, 200)
    assert image_from_bytes(data, min_side=101).size == (300, 200)  # halving would go below 101
    assert image_from_bytes(data, min_side=100).size == (150, 100)


def test_bombs_are_refused_from_the_header_when_reducing_too(monkeypatch):
    def no_decoding(self, *args, **kwargs):
        raise AssertionError("pixels were decoded")

    data = blank_png(8000, 7000)
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(UnusableImageError, match="is too large: 56 megapixels"):
        image_from_bytes(data, "bomb.png", min_side=256)


def wide_png(width: int, height: int, *, bit_depth: int, colour_type: int, channels: int) -> bytes:
    """A valid all-black PNG written row by row: a small file of any declared size, without holding its pixels."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    row = bytes(1 + (width * channels * bit_depth + 7) // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


MEASURE_PEAK = """
import resource, sys
from pathlib import Path
from PIL import Image
from picsort.photos.images import image_from_path
image_from_path(sys.argv[1] + ".warm.png", min_side=256)  # imports and first-call costs out of the way
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if sys.argv[2] == "decode":
    out = image_from_path(sys.argv[1], min_side=256)
    assert max(out.size) < 1024, out.size
else:  # the baseline: one RGB picture of the same size, every page touched
    width, height = Image.open(sys.argv[1]).size
    picture = Image.new("RGB", (width, height), (1, 2, 3))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


@pytest.mark.parametrize(("kind", "bit_depth", "colour_type", "channels"),
                         [("1-bit grey", 1, 0, 1), ("8-bit RGB", 8, 2, 3), ("8-bit RGBA", 8, 6, 4),
                          ("16-bit grey", 16, 0, 1)])
def test_a_crafted_7000px_png_costs_no_more_than_one_picture_of_its_size(kind, bit_depth, colour_type, channels,
                                                                          tmp_path):
    """Ten such files (1.5 MB in all) once cost the app 2 GB; each must now cost at most one full-size picture."""
    import subprocess
    import sys

    path = tmp_path / "crafted.png"
    path.write_bytes(wide_png(7000, 7000, bit_depth=bit_depth, colour_type=colour_type, channels=channels))
    assert path.stat().st_size < 2_000_000  # a small file under every limit: 49 megapixels
    (tmp_path / "crafted.png.warm.png").write_bytes(encode(Image.new("RGB", (600, 600)), "PNG"))

    def peak_kb(what: str) -> int:
        result = subprocess.run([sys.executable, "-c", MEASURE_PEAK, str(path), what], capture_output=True,
                                text=True, check=True, cwd=Path(__file__).resolve().parents[3])
        return int(result.stdout.split()[-1])

    picture, decoding = peak_kb("baseline"), peak_kb("decode")
    assert decoding <= 1.2 * picture, f"{kind}: decoding took {decoding} KB, one RGB picture {picture} KB"


# --- things that are not regular files ---------------------------------------------


def finishes(call, seconds: float = 20):
    """Run `call` in a thread; (True, its result or exception) if it ended within `seconds`, else (False, None)."""
    import threading

    outcome = []

    def run():
        try:
            outcome.append(call())
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return (not thread.is_alive()), (outcome[0] if outcome else None)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_pipe_named_like_a_photo_is_refused_at_once(tmp_path):
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    ended, outcome = finishes(lambda: image_from_path(fifo))
    if not ended:  # unblock the stuck reader so the thread can end
        with open(fifo, "wb"):
            pass
    assert ended, "reading a pipe hung"
    assert isinstance(outcome, UnusableImageError) and "not a regular file" in str(outcome)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_link_to_an_endless_device_is_refused_at_once(tmp_path):
    link = tmp_path / "zero.jpg"
    link.symlink_to("/dev/zero")
    ended, outcome = finishes(lambda: image_from_path(link))
    assert ended and isinstance(outcome, UnusableImageError) and "not a regular file" in str(outcome)


# --- whatever a Python user hands the API ------------------------------------------


def test_every_way_of_handing_over_a_file_gives_the_same_picture(tmp_path):
    data = encode(two_colour_picture(), "PNG")
    path = tmp_path / "bear.png"
    path.write_bytes(data)
    expected = np.asarray(image_from_path(path))
    with open(path, "rb") as file:
        from_file = image_from_any(file)
    for form in (str(path), path, data, bytearray(data), memoryview(data), io.BytesIO(data), Image.open(path)):
        assert np.array_equal(np.asarray(image_from_any(form)), expected), type(form)
    assert np.array_equal(np.asarray(from_file), expected)


def test_a_file_object_is_read_only_up_to_the_limit(monkeypatch):
    monkeypatch.setattr(images, "MAX_UPLOAD_BYTES", 1000)

    class Endless(io.RawIOBase):
        asked = 0

        def readable(self):
            return True

        def readinto(self, buffer):
            Endless.asked += len(buffer)
            buffer[:] = bytes(len(buffer))
            return len(buffer)

    stream = Endless()
    stream.name = "/somewhere/stream.jpg"
    with pytest.raises(UnusableImageError, match=r"^'stream\.jpg' is larger than the 1000 bytes limit$"):
        image_from_any(stream)
    assert Endless.asked == 1001


def test_a_text_file_object_is_a_programming_error(tmp_path):
    (tmp_path / "bear.png").write_bytes(encode(two_colour_picture(), "PNG"))
    with open(tmp_path / "bear.png", encoding="latin-1") as file:
        with pytest.raises(TypeError, match="'rb'"):
            image_from_any(file)


@pytest.mark.parametrize("item", [42, ["bear.jpg"], {"path": "bear.jpg"}, None, 3.5])
def test_anything_else_is_a_type_error_naming_the_type(item):
    with pytest.raises(TypeError, match=type(item).__name__):
        image_from_any(item)


@pytest.mark.parametrize("empty", [
    Image.new("RGB", (0, 0)), Image.new("L", (10, 0)), np.zeros((0, 0), np.uint8), np.zeros((0, 5, 3), np.uint8)])
def test_empty_pictures_are_refused(empty):
    with pytest.raises(UnusableImageError, match="is empty"):
        image_from_any(empty)


def test_pil_images_in_every_mode_look_as_they_would_from_a_file():
    rng = np.random.default_rng(4)
    rgb = Image.fromarray(rng.integers(0, 255, (20, 30, 3), np.uint8))
    gray = rgb.convert("L")
    grey_rgb = np.asarray(gray.convert("RGB"))
    cases = {
        "RGB": (rgb, np.asarray(rgb)),
        "L": (gray, grey_rgb),
        "I;16": (Image.fromarray(np.asarray(gray).astype(np.uint16) * 257), grey_rgb),
        "I": (Image.fromarray(np.asarray(gray).astype(np.int32)), grey_rgb),
        "F": (Image.fromarray(np.asarray(gray).astype(np.float32) / 255), grey_rgb),
        "LA": (gray.convert("LA"), grey_rgb),
        "RGBA": (rgb.convert("RGBA"), np.asarray(rgb)),
        "CMYK": (rgb.convert("CMYK"), np.asarray(rgb.convert("CMYK").convert("RGB"))),
        "P": (rgb.convert("P"), np.asarray(rgb.convert("P").convert("RGB"))),
        "1": (gray.convert("1"), np.asarray(gray.convert("1").convert("RGB"))),
    }
    for mode, (picture, expected) in cases.items():
        assert picture.mode == mode
        before = picture.tobytes()
        out = image_from_any(picture)
        assert_rgb(out, (30, 20))
        assert np.abs(np.asarray(out, int) - expected).max() <= 1, mode
        assert picture.tobytes() == before and out is not picture  # the caller's image is left alone


def test_exif_orientation_of_a_pil_image_is_applied_like_the_file_s(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    two_colour_picture((64, 48)).save(path, exif=exif, quality=95)
    opened = Image.open(path)
    from_path, from_image = image_from_path(path), image_from_any(opened)
    assert from_image.size == from_path.size == (48, 64)
    assert np.array_equal(np.asarray(from_image), np.asarray(from_path))
    assert opened.size == (64, 48)  # the caller's image is not turned


def test_numpy_arrays():
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 255, (20, 30, 3), np.uint8)
    assert np.array_equal(np.asarray(image_from_any(pixels)), pixels)
    rgba = np.concatenate([pixels, np.zeros((20, 30, 1), np.uint8)], axis=2)
    assert np.array_equal(np.asarray(image_from_any(rgba)), pixels)  # alpha dropped, colours kept
    grey = pixels[:, :, 0]
    for form in (grey, grey[:, :, None], grey.astype(np.uint16) * 257, grey.astype(np.float32) / 255,
                 grey.astype(np.float64), np.asfortranarray(grey)):
        out = image_from_any(form)
        assert_rgb(out, (30, 20))
        assert np.array_equal(np.asarray(out)[:, :, 1], grey), form.dtype
    assert np.asarray(image_from_any(np.eye(4, dtype=bool)))[0, 0, 0] == 255
    out = image_from_any(pixels.repeat(20, axis=0).repeat(20, axis=1), min_side=100)
    assert out.size == (150, 100)  # reduced too


@pytest.mark.parametrize(("array", "problem"), [
    (np.zeros((10, 10, 2), np.uint8), r"shape \(10, 10, 2\)"),
    (np.zeros((2, 10, 10, 3), np.uint8), r"shape \(2, 10, 10, 3\)"),
    (np.zeros(10, np.uint8), r"shape \(10,\)"),
    (np.zeros((10, 10), np.complex64), "complex64"),
    (np.zeros((10, 10), object), "object"),
])
def test_arrays_that_are_not_pictures_are_refused_by_name(array, problem):
    with pytest.raises(UnusableImageError, match=problem):
        image_from_any(array)


def test_the_pixel_limit_holds_for_pictures_in_memory_too(monkeypatch):
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 99)
    for item in (Image.new("L", (10, 10)), np.zeros((10, 10), np.uint8)):
        with pytest.raises(UnusableImageError, match="is too large"):
            image_from_any(item)


EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.fixture(scope="module")
def classifier():
    from picsort.inference.classify import load_model

    return load_model()


def test_a_16_bit_or_float_bear_is_classified_like_its_8_bit_self(classifier):
    """Pillow's convert("RGB") clipped I;16 pictures to white: the file said grizzly, the picture said teddy."""
    for photo in sorted(EXAMPLES.glob("*.jpg")):
        grey = Image.open(photo).convert("L")
        eight_bit = classifier.predict(grey)
        for wide in (Image.fromarray(np.asarray(grey).astype(np.uint16) * 257),
                     Image.fromarray(np.asarray(grey).astype(np.float32) / 255),
                     np.asarray(grey).astype(np.uint16) * 257):
            prediction = classifier.predict(wide)
            assert prediction.label == eight_bit.label, photo.name
            assert prediction.probabilities == pytest.approx(eight_bit.probabilities, abs=1e-6)


@pytest.mark.parametrize("values", [np.nan, np.inf, -np.inf, "NaN and infinities"])
def test_a_picture_with_no_finite_value_is_refused_not_classified(classifier, values):
    array = np.full((64, 64, 3), np.nan if isinstance(values, str) else values, np.float32)
    if isinstance(values, str):
        array[::2] = np.inf
    with pytest.raises(UnusableImageError, match=r"^'image' has no pixel values: every one is NaN or infinite$"):
        classifier.predict(array)
    with pytest.raises(UnusableImageError, match=r"^'scan\.tif' has no pixel values"):
        image_from_bytes(encode(Image.fromarray(array[:, :, 0]), "TIFF"), "scan.tif")


def test_a_bear_is_classified_the_same_however_it_is_handed_over(classifier, tmp_path):
    photo = EXAMPLES / "grizzly-1.jpg"
    exif = Image.Exif()
    exif[0x0112] = 8
    turned = tmp_path / "turned.jpg"
    Image.open(photo).transpose(Image.Transpose.ROTATE_270).save(turned, exif=exif, quality=95)
    by_path = classifier.predict(turned)
    assert by_path.label == "grizzly"
    with open(turned, "rb") as file:
        by_file = classifier.predict(file)
    pixels = np.asarray(classifier.to_image(turned))
    for prediction in (by_file, classifier.predict(turned.read_bytes()), classifier.predict(Image.open(turned)),
                       classifier.predict(pixels)):
        assert prediction.label == by_path.label
        assert prediction.probabilities == pytest.approx(by_path.probabilities, abs=1e-6)


def test_an_empty_picture_gets_no_class(classifier):
    with pytest.raises(UnusableImageError, match="empty"):
        classifier.predict(Image.new("RGB", (0, 0)))

