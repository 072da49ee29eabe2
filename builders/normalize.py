"""Turn one encoded input image into the bytes FDRD stores, or into a reason it cannot be used.

Every source goes through `normalize_image` the same way: decode check, EXIF orientation applied
before anything else, RGB, shrink so the short side is at most `short_side` (never enlarge),
re-encode as JPEG, then hashes of what is stored: sha256 of the bytes, a hash of the pixels (exact
duplicates) and a perceptual hash (near duplicates). `near_duplicate_pairs` finds pairs of perceptual
hashes within a Hamming distance without comparing every pair; `near_duplicate_pairs_reference` is
the obvious all-pairs loop it is tested against. A phash match is only a candidate: phash sees a
32x32 grey picture, so two different small objects on the same background (a pink and a blue beetle
on sand) can share it. `thumbnails_agree` confirms a candidate by comparing colour thumbnails cell by
cell: re-encodes and resizes of one picture differ by a few levels in every cell, different
pictures by dozens in the cells where they differ.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow's own default Image.MAX_IMAGE_PIXELS (about 89 megapixels), fixed here so that a
# library or user changing the global does not change which images a build accepts.
DEFAULT_MAX_PIXELS = 89_478_485
# Largest input file read, checked before reading it: a 3 GB file named .jpg would otherwise take 3 GB
# of memory before being refused. 512 MiB is above any real photo (a 61-megapixel camera's 16-bit RGB
# TIFF is 366 MB; JPEGs are a tenth of that) and keeps one worker's peak memory bounded.
DEFAULT_MAX_INPUT_BYTES = 512 * 2**20


@dataclass(frozen=True)
class NormalizeOptions:
    short_side: int = 336  # CLIP ViT-L/14@336 input; smaller backbones crop from it
    jpeg_quality: int = 95  # high enough that re-encoding leaves no visible artefacts
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger images are refused as decompression bombs
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES  # larger input files are refused before being read
    # Let the JPEG decoder shrink by 1/2, 1/4 or 1/8 in the DCT domain when the image is far larger
    # than needed (never below short_side); the final resize still uses LANCZOS.
    jpeg_draft: bool = True


@dataclass(frozen=True)
class NormalizedImage:
    jpeg: bytes
    width: int
    height: int
    sha256: str  # of `jpeg`, the stored bytes
    pixel_hash: str  # sha256 of the stored RGB pixels and size: equal pictures, whatever the encoding
    phash: str  # imagehash.phash as 16 hex digits (64 bits)


class ImageRejected(Exception):
    """An input that cannot become an FDRD image; `reason` is what rejected.jsonl says."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _too_large(size: int, limit: int) -> ImageRejected:
    return ImageRejected(f"file too large: {size} bytes, over the input limit of {limit} bytes "
                         "(raise NormalizeOptions.max_input_bytes / --max-input-mb if it is a real image)")


def read_image_bytes(path: str | os.PathLike, max_bytes: int = DEFAULT_MAX_INPUT_BYTES) -> bytes:
    """The file's bytes, or ImageRejected naming why they cannot be read. The size is checked before
    reading (and the read stops past `max_bytes`: a file may grow, or lie about its size)."""
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise ImageRejected("is a directory, not an image file")
        if not stat.S_ISREG(info.st_mode):  # a FIFO or device would block or never end
            raise ImageRejected("not a regular file (a pipe, socket or device)")
        if info.st_size > max_bytes:
            raise _too_large(info.st_size, max_bytes)
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise ImageRejected("missing file") from None
    except IsADirectoryError:
        raise ImageRejected("is a directory, not an image file") from None
    except OSError as error:
        raise ImageRejected(f"unreadable file ({error.strerror or error})") from None
    if len(data) > max_bytes:
        raise _too_large(len(data), max_bytes)
    return data


def target_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Size with the short side at most `short_side`, aspect kept; never larger than the input."""
    short = min(width, height)
    if short <= short_side:
        return width, height
    scale = short_side / short
    # The short side lands exactly on short_side; the long side is rounded, and at least 1.
    if width <= height:
        return short_side, max(1, round(height * scale))
    return max(1, round(width * scale)), short_side


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with transparent areas put on white (a plain convert would make them black) and 16-bit
    grey scaled to 8 bits (a plain convert would clip everything above 255 to white)."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I;16") or image.mode == "I":
        pixels = np.asarray(image).astype(np.int64)
        if pixels.max(initial=0) > 255:
            pixels = np.clip(pixels, 0, 65535) >> 8
        return Image.fromarray(pixels.astype(np.uint8), "L").convert("RGB")
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _decode(data: bytes, options: NormalizeOptions) -> Image.Image:
    """Open, refuse bombs by header size, decode fully; every failure becomes a named reason."""
    if not data:
        raise ImageRejected("zero-byte file")
    try:
        with warnings.catch_warnings():
            # Our own limit below decides; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageRejected("not an image (unrecognised format)") from None
    except Image.DecompressionBombError as error:
        raise ImageRejected(f"decompression bomb refused ({error})") from None
    except Exception as error:  # Pillow raises many types for bad headers
        raise ImageRejected(f"corrupt image header ({type(error).__name__}: {error})") from None
    width, height = image.size
    if width * height > options.max_pixels:
        raise ImageRejected(
            f"decompression bomb refused: {width}x{height} = {width * height} pixels "
            f"exceeds the limit of {options.max_pixels}"
        )
    if width < 1 or height < 1:
        raise ImageRejected(f"empty image ({width}x{height})")
    if options.jpeg_draft and image.format == "JPEG":
        scale = options.short_side / min(width, height)
        if scale < 1:
            image.draft("RGB", (int(width * scale) + 1, int(height * scale) + 1))
    try:
        image.load()
    except OSError as error:
        if "truncated" in str(error).lower():
            raise ImageRejected("truncated image (file ends before the image data does)") from None
        raise ImageRejected(f"corrupt image data ({error})") from None
    except Exception as error:
        raise ImageRejected(f"corrupt image data ({type(error).__name__}: {error})") from None
    return image


def normalize_image(data: bytes, options: NormalizeOptions = NormalizeOptions()) -> NormalizedImage:
    """The stored form of one input image; raises ImageRejected with a reason when unusable."""
    if len(data) > options.max_input_bytes:
        raise _too_large(len(data), options.max_input_bytes)
    image = _decode(data, options)
    try:
        # Orientation first, so that size, hashes and pixels all describe the upright picture.
        image = ImageOps.exif_transpose(image)
    except Exception as error:  # a malformed EXIF block must not take the build down
        raise ImageRejected(f"corrupt EXIF orientation data ({type(error).__name__}: {error})") from None
    image = _to_rgb(image)
    size = target_size(image.width, image.height, options.short_side)
    if size != image.size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=options.jpeg_quality)
    jpeg = buffer.getvalue()
    pixel_hash = hashlib.sha256(f"{image.width}x{image.height}:".encode() + image.tobytes()).hexdigest()
    return NormalizedImage(
        jpeg=jpeg,
        width=image.width,
        height=image.height,
        sha256=hashlib.sha256(jpeg).hexdigest(),
        pixel_hash=pixel_hash,
        phash=str(imagehash.phash(image)),
    )


PHASH_BITS = 64  # imagehash.phash with its default hash_size 8
MAX_PHASH_THRESHOLD = 32  # beyond half the bits "near" means nothing


def phash_int(phash_hex: str) -> int:
    return int(phash_hex, 16)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def near_duplicate_pairs_reference(phashes: list[str], threshold: int) -> list[tuple[int, int, int]]:
    """All (i, j, distance) with i < j and Hamming distance <= threshold, by comparing every pair."""
    values = [phash_int(h) for h in phashes]
    return [
        (i, j, hamming(values[i], values[j]))
        for i in range(len(values))
        for j in range(i + 1, len(values))
        if hamming(values[i], values[j]) <= threshold
    ]


def _bands(threshold: int) -> list[tuple[int, int]]:
    """threshold + 1 disjoint bit ranges (shift, width) covering the 64 bits."""
    count = threshold + 1
    bounds = [round(k * PHASH_BITS / count) for k in range(count + 1)]
    return [(bounds[k], bounds[k + 1] - bounds[k]) for k in range(count)]


def near_duplicate_pairs(phashes: list[str], threshold: int) -> list[tuple[int, int, int]]:
    """Same answer as the reference, sorted, in about linear time for spread-out hashes.

    Pigeonhole (multi-index hashing): split the bits into threshold + 1 bands; two hashes that differ
    in at most `threshold` bits agree exactly on at least one band, so only hashes that share a band
    value are compared.
    """
    if not 0 <= threshold <= MAX_PHASH_THRESHOLD:
        raise ValueError(f"phash threshold must be within 0..{MAX_PHASH_THRESHOLD}, got {threshold}")
    values = [phash_int(h) for h in phashes]
    found: dict[tuple[int, int], int] = {}
    for shift, width in _bands(threshold):
        mask = (1 << width) - 1
        buckets: dict[int, list[int]] = {}
        for index, value in enumerate(values):
            buckets.setdefault((value >> shift) & mask, []).append(index)
        for members in buckets.values():
            for a in range(len(members)):
                for b in range(a + 1, len(members)):
                    pair = (members[a], members[b])
                    if pair not in found:
                        distance = hamming(values[pair[0]], values[pair[1]])
                        if distance <= threshold:
                            found[pair] = distance
    return sorted((i, j, d) for (i, j), d in found.items())


def first_occurrences(keys: list[str]) -> dict[int, int]:
    """For every index whose key appeared earlier: index -> index of the first occurrence."""
    first: dict[str, int] = {}
    later: dict[int, int] = {}
    for index, key in enumerate(keys):
        if key in first:
            later[index] = first[key]
        else:
            first[key] = index
    return later


THUMBNAIL_SIDE = 16  # cells per side of the colour thumbnail that confirms a phash candidate
# Largest per-cell colour difference (0-255, mean over RGB) of two copies of one picture. Measured:
# a 90% resize re-encoded at quality 80 stays under 9; distinct synthetic specimens that share a
# phash differ by 55 or more in the cells of the object.
THUMBNAIL_TOLERANCE = 24


def thumbnail(jpeg: bytes) -> np.ndarray:
    """THUMBNAIL_SIDE x THUMBNAIL_SIDE RGB cell means of a stored image, as int16."""
    with Image.open(io.BytesIO(jpeg)) as image:
        small = image.convert("RGB").resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.int16)


def thumbnails_agree(a: np.ndarray, b: np.ndarray, tolerance: int = THUMBNAIL_TOLERANCE) -> bool:
    """True when no cell differs by more than `tolerance` (mean absolute difference over RGB)."""
    return float(np.abs(a - b).mean(axis=2).max()) <= tolerance


def confirmed_near_duplicates(
    phashes: list[str], threshold: int, jpeg_of: Callable[[list[int]], dict[int, bytes]]
) -> list[tuple[int, int, int]]:
    """near_duplicate_pairs whose colour thumbnails agree; `jpeg_of(indices)` returns the stored
    bytes of just the candidates (the caller may have to read them from disk)."""
    candidates = near_duplicate_pairs(phashes, threshold)
    if not candidates:
        return []
    involved = sorted({i for pair in candidates for i in pair[:2]})
    jpegs = jpeg_of(involved)
    thumbs = {i: thumbnail(jpegs[i]) for i in involved}
    return [(i, j, d) for i, j, d in candidates if thumbnails_agree(thumbs[i], thumbs[j])]
