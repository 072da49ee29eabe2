"""normalize_image on images drawn here, and the near-duplicate search against its all-pairs reference."""

from __future__ import annotations

import io
import random

import imagehash
import pytest
from PIL import Image, ImageDraw

from builders.normalize import (
    ImageRejected,
    NormalizeOptions,
    confirmed_near_duplicates,
    first_occurrences,
    near_duplicate_pairs,
    near_duplicate_pairs_reference,
    normalize_image,
    read_image_bytes,
    target_size,
    thumbnail,
)


def encode(image: Image.Image, fmt: str = "JPEG", **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_args)
    return buffer.getvalue()


def marked_image(size=(120, 80)) -> Image.Image:
    """White picture with a red block in its top-left corner: orientation is visible."""
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).rectangle((0, 0, size[0] // 4, size[1] // 4), fill=(255, 0, 0))
    return image


def decoded(jpeg: bytes) -> Image.Image:
    return Image.open(io.BytesIO(jpeg)).convert("RGB")


def test_exif_orientation_is_applied_before_anything_else():
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
    result = normalize_image(encode(marked_image(), exif=exif.tobytes()))
    assert (result.width, result.height) == (80, 120)
    upright = decoded(result.jpeg)
    # Rotating clockwise moves the top-left mark to the top-right corner.
    assert upright.getpixel((75, 3))[0] > 200 and upright.getpixel((75, 3))[1] < 80
    assert upright.getpixel((3, 3)) > (200, 200, 200)


@pytest.mark.parametrize("size", [(50, 30), (336, 500), (100, 100)])
def test_small_images_are_never_upscaled(size):
    result = normalize_image(encode(marked_image(size)))
    assert (result.width, result.height) == size


@pytest.mark.parametrize("size,short_side", [((1000, 600), 336), ((600, 1000), 336), ((401, 7), 5), ((7, 401), 5)])
def test_large_images_shrink_to_the_short_side_keeping_aspect(size, short_side):
    result = normalize_image(encode(marked_image(size), quality=90), NormalizeOptions(short_side=short_side))
    assert min(result.width, result.height) == short_side
    assert abs(result.width / result.height - size[0] / size[1]) < 0.05 * size[0] / size[1] + 1 / short_side


def test_target_size_against_a_plain_formula():
    rng = random.Random(1)
    for _ in range(500):
        width, height, short = rng.randrange(1, 3000), rng.randrange(1, 3000), rng.randrange(1, 500)
        new = target_size(width, height, short)
        if min(width, height) <= short:
            assert new == (width, height)
        else:
            assert min(new) == short and new[0] <= width and new[1] <= height
            assert abs(max(new) - max(width, height) * short / min(width, height)) <= 0.5


def test_outputs_are_rgb_jpeg_with_hashes_of_what_is_stored():
    rgba = Image.new("RGBA", (40, 40), (0, 0, 255, 0))  # fully transparent: must become white, not black
    result = normalize_image(encode(rgba, "PNG"))
    image = Image.open(io.BytesIO(result.jpeg))
    assert image.format == "JPEG" and image.mode == "RGB"
    assert image.convert("RGB").getpixel((20, 20)) > (240, 240, 240)
    import hashlib

    assert result.sha256 == hashlib.sha256(result.jpeg).hexdigest()
    assert len(result.phash) == 16 and int(result.phash, 16) >= 0
    grey = normalize_image(encode(Image.new("L", (30, 20), 128), "PNG"))
    assert Image.open(io.BytesIO(grey.jpeg)).mode == "RGB"
    deep = normalize_image(encode(Image.new("I;16", (30, 20), 30000), "PNG"))  # 16-bit grey
    assert abs(decoded(deep.jpeg).getpixel((15, 10))[0] - 30000 // 256) <= 2


def test_same_pixels_in_other_encodings_share_the_pixel_hash():
    image = marked_image((64, 48))
    png_fast = normalize_image(encode(image, "PNG", compress_level=1))
    png_small = normalize_image(encode(image, "PNG", compress_level=9))
    assert png_fast.pixel_hash == png_small.pixel_hash
    other = marked_image((64, 48))
    other.putpixel((60, 40), (0, 0, 0))
    assert normalize_image(encode(other, "PNG")).pixel_hash != png_fast.pixel_hash


def test_jpeg_quality_is_configurable_and_output_deterministic():
    rng = random.Random(0)
    noisy = Image.frombytes("RGB", (96, 96), bytes(rng.randrange(256) for _ in range(96 * 96 * 3)))
    data = encode(noisy, "PNG")
    high, low = normalize_image(data, NormalizeOptions(jpeg_quality=95)), normalize_image(data, NormalizeOptions(jpeg_quality=30))
    assert len(low.jpeg) < len(high.jpeg)
    assert normalize_image(data).jpeg == normalize_image(data).jpeg


def test_bad_inputs_are_rejected_with_reasons(tmp_path, monkeypatch):
    whole = encode(marked_image((200, 200)))
    png = bytearray(encode(marked_image((64, 64)), "PNG"))
    start = png.index(b"IDAT") + 10
    png[start : start + 10] = b"\xff" * 10  # scrambled compressed pixel data
    cases = {
        "zero-byte": b"",
        "not an image": b"this is text, not pixels\n",
        "truncated": whole[: len(whole) // 2],
        "corrupt": bytes(png),
    }
    for expected, data in cases.items():
        with pytest.raises(ImageRejected) as error:
            normalize_image(data)
        assert expected in error.value.reason, (expected, error.value.reason)
    with pytest.raises(ImageRejected, match="missing file"):
        read_image_bytes(tmp_path / "nothing.jpg")
    with pytest.raises(ImageRejected, match="directory"):
        read_image_bytes(tmp_path)


def test_decompression_bombs_are_refused():
    with pytest.raises(ImageRejected, match="decompression bomb refused: 200x200 = 40000 pixels"):
        normalize_image(encode(marked_image((200, 200)), "PNG"), NormalizeOptions(max_pixels=39_999))
    # Pillow's own guard (beyond twice Image.MAX_IMAGE_PIXELS) fires at open(): still a reason, not a crash.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
        with pytest.raises(ImageRejected, match="decompression bomb"):
            normalize_image(encode(marked_image((200, 200)), "PNG"))


def random_phashes(rng: random.Random, count: int) -> list[str]:
    """Clusters of close hashes (ties, distance 0) among spread-out ones."""
    values = []
    while len(values) < count:
        base = rng.getrandbits(64)
        values.append(base)
        for _ in range(rng.randrange(0, 4)):
            flipped = base
            for bit in rng.sample(range(64), rng.randrange(0, 7)):
                flipped ^= 1 << bit
            values.append(flipped)
    return [f"{v:016x}" for v in values[:count]]


@pytest.mark.parametrize("threshold", [0, 1, 4, 6, 10])
def test_near_duplicate_pairs_match_the_all_pairs_reference(threshold):
    rng = random.Random(threshold)
    for count in (0, 1, 2, 60, 240):
        phashes = random_phashes(rng, count)
        assert near_duplicate_pairs(phashes, threshold) == near_duplicate_pairs_reference(phashes, threshold)
    same = ["00000000000000ff"] * 5
    assert near_duplicate_pairs(same, 0) == [(i, j, 0) for i in range(5) for j in range(i + 1, 5)]
    with pytest.raises(ValueError):
        near_duplicate_pairs(same, 40)


def test_first_occurrences_against_a_plain_loop():
    rng = random.Random(5)
    keys = [rng.choice("abcdefg") for _ in range(200)]
    expected = {i: keys.index(k) for i, k in enumerate(keys) if keys.index(k) != i}
    assert first_occurrences(keys) == expected


def test_phash_candidates_are_confirmed_by_colour():
    sand = (220, 200, 150)
    pink, blue = Image.new("RGB", (128, 128), sand), Image.new("RGB", (128, 128), sand)
    ImageDraw.Draw(pink).ellipse((50, 50, 80, 75), fill=(230, 100, 200))
    ImageDraw.Draw(blue).ellipse((50, 50, 80, 75), fill=(40, 60, 220))
    copy = pink.resize((115, 115), Image.BILINEAR)
    jpegs = [normalize_image(encode(im, quality=q)).jpeg for im, q in ((pink, 95), (blue, 95), (copy, 80))]
    phashes = [str(imagehash.phash(decoded(j))) for j in jpegs]
    candidates = near_duplicate_pairs(phashes, 10)
    assert (0, 1) in [pair[:2] for pair in candidates]  # grey phash cannot tell pink from blue
    confirmed = confirmed_near_duplicates(phashes, 10, lambda wanted: {i: jpegs[i] for i in wanted})
    assert [pair[:2] for pair in confirmed] == [(0, 2)]
    assert thumbnail(jpegs[0]).shape == (16, 16, 3)
