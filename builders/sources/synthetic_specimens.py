"""What the synthetic source draws: domains, meta-categories, the one trait that tells siblings apart,
the per-image attributes, and the PIL code that draws a specimen from them.

Design: every specimen is a body (one shape per meta-category) seen with six independent, visibly
drawn attributes (colour, pattern, size, position, background, rotation). Within a meta-category
the subcategories differ by ONE trait: a count (star points, spots, polygon sides, facet lines) or
an inner mark (dot, ring, cross, bar, triangle, square). Geometry is computed in a unit frame
(radius 1, "up" = -y) and transformed, so rotation and size never need a resampling pass, and a
128 px drawing costs about a millisecond.
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

COUNT_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MARKS = ("dot", "ring", "cross", "bar", "triangle", "square")


@dataclass(frozen=True)
class MetaSpec:
    name: str  # meta-category name, also the head noun of every category name ("starflower")
    body: str  # drawing routine: star, bloom, beetle, prism, geode
    trait: str  # "count" or "mark"
    values: tuple  # one trait value per subcategory (counts or mark names)
    name_pattern: str  # "{word}-pointed" -> "five-pointed starflower"

    def category_names(self) -> list[str]:
        names = []
        for value in self.values:
            word = COUNT_WORDS[value - 1] if self.trait == "count" else value
            names.append(f"{self.name_pattern.format(word=word)} {self.name}")
        return names


@dataclass(frozen=True)
class DomainSpec:
    name: str
    metas: tuple[MetaSpec, ...]


DOMAINS: tuple[DomainSpec, ...] = (
    DomainSpec(
        "synthetic_flowers",
        (
            MetaSpec("starflower", "star", "count", (3, 4, 5, 6, 7, 8), "{word}-pointed"),
            MetaSpec("bellflower", "bloom", "mark", MARKS, "{word}-eyed"),
        ),
    ),
    DomainSpec(
        "synthetic_beetles",
        (
            MetaSpec("shield beetle", "beetle", "count", (1, 2, 3, 4, 5, 6), "{word}-spot"),
            MetaSpec("horn beetle", "beetle", "mark", MARKS, "{word}-backed"),
        ),
    ),
    DomainSpec(
        "synthetic_crystals",
        (
            MetaSpec("prism", "prism", "count", (3, 4, 5, 6, 7, 8), "{word}-sided"),
            MetaSpec("geode", "geode", "count", (2, 3, 4, 5, 6, 7), "{word}-facet"),
        ),
    ),
)
DOMAIN_BY_NAME = {d.name: d for d in DOMAINS}

# Per-image attributes: value -> drawing parameter. Values are the words captions use.
COLOURS = {
    "red": (210, 40, 40),
    "orange": (240, 140, 30),
    "yellow": (235, 210, 40),
    "green": (40, 150, 60),
    "blue": (40, 90, 210),
    "purple": (130, 60, 180),
    "pink": (240, 130, 180),
    "brown": (130, 80, 40),
}
PATTERNS = ("plain", "striped", "outlined")
SIZES = {"small": 0.62, "mid-sized": 0.8, "large": 1.0}
POSITIONS = {"left": (0.34, 0.5), "right": (0.66, 0.5), "top": (0.5, 0.36), "bottom": (0.5, 0.64), "centre": (0.5, 0.5)}
BACKGROUNDS = {
    "sand": (222, 200, 150),
    "grass": (160, 205, 130),
    "sky": (165, 205, 240),
    "night": (25, 30, 60),
    "snow": (242, 242, 246),
    "stone": (145, 145, 150),
}
ROTATIONS = {"upright": 0.0, "tilted left": -40.0, "tilted right": 40.0, "upside down": 180.0}
ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLOURS),
    "pattern": PATTERNS,
    "size": tuple(SIZES),
    "position": tuple(POSITIONS),
    "background": tuple(BACKGROUNDS),
    "rotation": tuple(ROTATIONS),
}
MARK_COLOUR = (20, 20, 20)
LIGHT_MARK_COLOUR = (245, 245, 240)
# Below this luma a body gets light marks, so the trait keeps its contrast on it and on its stripes.
DARK_BODY_LUMA = 115
# Largest specimen radius as a fraction of the image side; the stem/head/base adds ~0.6 radius.
MAX_RADIUS = 0.2


def draw_attributes(rng: random.Random) -> dict[str, str]:
    """One value per attribute type, each drawn independently."""
    return {name: rng.choice(values) for name, values in ATTRIBUTE_VALUES.items()}


@dataclass(frozen=True)
class Pose:
    cx: float
    cy: float
    radius: float
    angle: float  # degrees, clockwise on screen

    def point(self, x: float, y: float) -> tuple[float, float]:
        a = math.radians(self.angle)
        cos_a, sin_a = math.cos(a), math.sin(a)
        return (self.cx + self.radius * (x * cos_a - y * sin_a), self.cy + self.radius * (x * sin_a + y * cos_a))

    def polygon(self, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        return [self.point(x, y) for x, y in points]

    def circle(self, x: float, y: float, r: float) -> tuple[float, float, float, float]:
        px, py = self.point(x, y)
        rr = r * self.radius
        return (px - rr, py - rr, px + rr, py + rr)


def _regular(n: int, r: float = 1.0, start: float = -90.0, cx: float = 0.0, cy: float = 0.0) -> list:
    return [
        (cx + r * math.cos(math.radians(start + 360 * i / n)), cy + r * math.sin(math.radians(start + 360 * i / n)))
        for i in range(n)
    ]


def _star(points: int) -> list[tuple[float, float]]:
    outer, inner = _regular(points, 1.0), _regular(points, 0.45, start=-90 + 180 / points)
    return [p for pair in zip(outer, inner, strict=True) for p in pair]


def _is_dark(colour: tuple[int, int, int]) -> bool:
    red, green, blue = colour
    return 0.299 * red + 0.587 * green + 0.114 * blue < DARK_BODY_LUMA


def _trait_colour(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    return LIGHT_MARK_COLOUR if _is_dark(colour) else MARK_COLOUR


def _shade(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(max(0, min(255, int(c * factor))) for c in colour)  # type: ignore[return-value]


def _background(draw: ImageDraw.ImageDraw, name: str, size: int, rng: random.Random) -> None:
    base = BACKGROUNDS[name]
    draw.rectangle((0, 0, size, size), fill=base)
    texture = _shade(base, 0.82) if name != "night" else (230, 230, 200)
    if name == "sand":
        for _ in range(40):
            x, y = rng.uniform(0, size), rng.uniform(0, size)
            draw.rectangle((x, y, x + 1, y + 1), fill=texture)
    elif name == "grass":
        for _ in range(30):
            x, y = rng.uniform(0, size), rng.uniform(0, size)
            draw.line((x, y, x + rng.uniform(-2, 2), y - size * 0.06), fill=texture, width=1)
    elif name == "sky":
        for _ in range(2):
            x, y = rng.uniform(0, size), rng.uniform(0, size * 0.5)
            draw.ellipse((x, y, x + size * 0.25, y + size * 0.08), fill=(250, 250, 252))
    elif name == "night":
        for _ in range(20):
            x, y = rng.uniform(0, size), rng.uniform(0, size)
            draw.point((x, y), fill=texture)
    elif name == "stone":
        step = size / 6
        for k in range(1, 6):
            draw.line((0, k * step, size, k * step), fill=texture)
            draw.line((k * step, 0, k * step, size), fill=texture)
    # snow: plain


def _body_shapes(meta: MetaSpec, trait_value) -> tuple[list[list], list[tuple]]:
    """Body polygons and body circles (x, y, r) in the unit frame."""
    if meta.body == "star":
        return [_star(trait_value)], []
    if meta.body == "bloom":
        return [], [(x, y, 0.45) for x, y in _regular(8, 0.6)] + [(0.0, 0.0, 0.62)]
    if meta.body == "beetle":
        return [_regular(28, 1.0)], [(0.0, -1.1, 0.32)]
    if meta.body == "prism":
        return [_regular(trait_value, 1.0)], []
    return [], [(0.0, 0.0, 1.0)]  # geode


def _scale_y(polygon: list, sx: float, sy: float) -> list:
    return [(x * sx, y * sy) for x, y in polygon]


def _draw_body(draw: ImageDraw.ImageDraw, pose: Pose, meta: MetaSpec, trait_value, fill, outline, width) -> None:
    polygons, circles = _body_shapes(meta, trait_value)
    if meta.body == "beetle":
        polygons = [_scale_y(polygons[0], 0.68, 1.0)]
    for x, y, r in circles:
        draw.ellipse(pose.circle(x, y, r), fill=fill, outline=outline, width=width)
    for polygon in polygons:
        draw.polygon(pose.polygon(polygon), fill=fill, outline=outline, width=width)


def _draw_orientation_cue(draw: ImageDraw.ImageDraw, pose: Pose, meta: MetaSpec, colour) -> None:
    """A stem, legs or a base, so that rotation is visible on symmetric bodies."""
    width = max(1, round(pose.radius * 0.12))
    if meta.body in ("star", "bloom"):
        draw.line([pose.point(0, 0.9), pose.point(0, 1.7)], fill=(40, 110, 40), width=width)
        draw.polygon(pose.polygon([(0, 1.35), (0.45, 1.15), (0.12, 1.5)]), fill=(40, 110, 40))
    elif meta.body == "beetle":
        for side in (-1, 1):
            for y in (-0.45, 0.05, 0.55):
                draw.line([pose.point(0.55 * side, y), pose.point(1.0 * side, y + 0.25)], fill=MARK_COLOUR, width=width)
    else:
        draw.polygon(pose.polygon([(-0.6, 1.05), (0.6, 1.05), (0.8, 1.45), (-0.8, 1.45)]), fill=_shade(colour, 0.5))


def _draw_mark(draw: ImageDraw.ImageDraw, pose: Pose, mark: str, ink, y: float = 0.0) -> None:
    s = 0.32
    width = max(1, round(pose.radius * 0.1))
    if mark == "dot":
        draw.ellipse(pose.circle(0, y, 0.17), fill=ink)
    elif mark == "ring":
        draw.ellipse(pose.circle(0, y, s), outline=ink, width=width)
    elif mark == "cross":
        draw.line([pose.point(-s, y - s), pose.point(s, y + s)], fill=ink, width=width)
        draw.line([pose.point(-s, y + s), pose.point(s, y - s)], fill=ink, width=width)
    elif mark == "bar":
        draw.polygon(pose.polygon([(-s, y - 0.1), (s, y - 0.1), (s, y + 0.1), (-s, y + 0.1)]), fill=ink)
    elif mark == "triangle":
        draw.polygon(pose.polygon(_regular(3, s, cy=y)), fill=ink)
    else:  # square
        draw.polygon(pose.polygon(_regular(4, s, start=-45, cy=y)), fill=ink)


# Spot layouts on a beetle's back, one per count, in the unit frame (mirror-symmetric).
SPOT_LAYOUTS = {
    1: [(0, 0.1)],
    2: [(-0.3, 0.1), (0.3, 0.1)],
    3: [(-0.3, -0.25), (0.3, -0.25), (0, 0.45)],
    4: [(-0.3, -0.3), (0.3, -0.3), (-0.3, 0.4), (0.3, 0.4)],
    5: [(-0.3, -0.4), (0.3, -0.4), (0, 0.05), (-0.3, 0.5), (0.3, 0.5)],
    6: [(-0.3, -0.5), (0.3, -0.5), (-0.3, 0.05), (0.3, 0.05), (-0.3, 0.6), (0.3, 0.6)],
}


def _draw_trait(draw: ImageDraw.ImageDraw, pose: Pose, meta: MetaSpec, trait_value, ink) -> None:
    if meta.trait == "mark":
        _draw_mark(draw, pose, trait_value, ink, y=0.1 if meta.body == "beetle" else 0.0)
    elif meta.body == "beetle":
        for x, y in SPOT_LAYOUTS[trait_value]:
            draw.ellipse(pose.circle(x, y, 0.15), fill=ink)
    elif meta.body == "geode":
        width = max(1, round(pose.radius * 0.09))
        for x, y in _regular(trait_value, 0.95):
            draw.line([pose.point(0, 0), pose.point(x, y)], fill=ink, width=width)
    # star points and prism sides are the body itself


def draw_specimen(
    meta: MetaSpec, trait_value, attributes: dict[str, str], size: int, rng: random.Random
) -> Image.Image:
    """The picture of one specimen; `rng` only adds jitter and background texture."""
    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    _background(draw, attributes["background"], size, rng)
    fx, fy = POSITIONS[attributes["position"]]
    jitter = size * 0.03
    pose = Pose(
        cx=fx * size + rng.uniform(-jitter, jitter),
        cy=fy * size + rng.uniform(-jitter, jitter),
        radius=MAX_RADIUS * size * SIZES[attributes["size"]],
        angle=ROTATIONS[attributes["rotation"]] + rng.uniform(-6, 6),
    )
    colour = COLOURS[attributes["colour"]]
    _draw_orientation_cue(draw, pose, meta, colour)
    pattern = attributes["pattern"]
    outline_width = max(1, round(pose.radius * 0.12))
    if pattern == "outlined":
        _draw_body(draw, pose, meta, trait_value, colour, MARK_COLOUR, outline_width)
    else:
        _draw_body(draw, pose, meta, trait_value, colour, None, 1)
    if pattern == "striped":
        _stripe(image, pose, meta, trait_value, _shade(colour, 0.5))
        draw = ImageDraw.Draw(image)
    _draw_trait(draw, pose, meta, trait_value, _trait_colour(colour))
    return image


def _stripe(image: Image.Image, pose: Pose, meta: MetaSpec, trait_value, stripe_colour) -> None:
    """Stripes across the body only: drawn on a copy and pasted back through a body mask."""
    mask = Image.new("L", image.size, 0)
    _draw_body(ImageDraw.Draw(mask), pose, meta, trait_value, 255, None, 1)
    striped = image.copy()
    draw = ImageDraw.Draw(striped)
    width = max(2, round(pose.radius * 0.2))
    # Diagonal in the body frame, so no stripe runs along a facet line or a bar mark.
    for k in range(-5, 6):
        offset = k * 0.45
        draw.line([pose.point(-1.6 + offset, -1.6), pose.point(1.6 + offset, 1.6)], fill=stripe_colour, width=width)
    image.paste(striped, mask=mask)


def png_bytes(image: Image.Image) -> bytes:
    """Lossless PNG; compress level 1 because drawing time matters more than a few bytes."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()
