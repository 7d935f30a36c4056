"""Procedurally drawn shapes in colours: a small, learnable dataset that needs no download.

The superclass decides the *shape* (disc, square, triangle, ...) and the subclass its
*hue* (evenly spaced around the colour wheel), so a specialist must tell colours apart
within one shape, and the generalist must tell shapes apart. Every image also varies in
position, scale, rotation, saturation and brightness, sits on a random low-saturation
background with a brightness gradient, and carries pixel noise, so the task is easy for
a small CNN but not trivial.

Images are drawn with vectorised numpy from soft-edged signed-distance functions (a
pixel's coverage is its distance to the shape's edge, so edges are anti-aliased), one
class at a time from a generator seeded by ``(seed, superclass, subclass)``: the images
of a class do not depend on how many superclasses are drawn.

:func:`write_synthetic_tree` writes the same images as a
``root/<superclass>/<subclass>/<k>.png`` folder tree for the ``folder`` source.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from supersub_tf.config import DataConfig, SyntheticConfig
from supersub_tf.data.examples import Examples
from supersub_tf.data.source import ListSource
from supersub_tf.errors import ConfigError
from supersub_tf.hierarchy import Hierarchy, Subclass, Superclass

SQRT2 = float(np.sqrt(2.0))

# Colour names of hues 0, 30, ..., 330 degrees.
COLOUR_NAMES = ("red", "orange", "yellow", "chartreuse", "green", "spring green", "cyan",
                "azure", "blue", "violet", "magenta", "rose")

HUE_JITTER = 0.12  # +- share of the spacing between neighbouring hues
NOISE_STD = 0.04  # pixel noise on the [0, 1] scale


# ------------------------------------------------------------------------------ shapes
# Each shape is a signed distance (approximately) in shape units: <= 0 inside, > 0
# outside, where the shape fills about the square [-1, 1]^2. Rows grow downwards, so
# v = -1 is the top.

def _box(u: np.ndarray, v: np.ndarray, half_w: float, half_h: float) -> np.ndarray:
    return np.maximum(np.abs(u) - half_w, np.abs(v) - half_h)


def _bands(t: np.ndarray, period: float) -> np.ndarray:
    """Stripes across ``t``: the middle half of every period is inside."""
    return (np.abs(np.mod(t / period, 1.0) - 0.5) - 0.25) * period


def _checker(a: np.ndarray, b: np.ndarray, period: float) -> np.ndarray:
    a, b = a / period, b / period
    edge = np.minimum(0.5 - np.abs(np.mod(a, 1.0) - 0.5), 0.5 - np.abs(np.mod(b, 1.0) - 0.5))
    even = np.mod(np.floor(a) + np.floor(b), 2.0) == 0
    return np.where(even, -edge, edge) * period


def _disc(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.hypot(u, v) - 1.0


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return _box(u, v, 0.85, 0.85)


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Apex at the top (v = -0.9), base at v = 0.8 with half-width 0.9.
    return np.maximum(v - 0.8, (1.7 * np.abs(u) - 0.9 * (v + 0.9)) / float(np.hypot(1.7, 0.9)))


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.minimum(_box(u, v, 0.3, 1.0), _box(u, v, 1.0, 0.3))


def _ring(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.abs(np.hypot(u, v) - 0.75) - 0.25


def _horizontal_stripes(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(_box(u, v, 0.9, 0.9), _bands(v, 0.6))


def _vertical_stripes(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(_box(u, v, 0.9, 0.9), _bands(u, 0.6))


def _diagonal_checker(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(_box(u, v, 0.9, 0.9), _checker((u + v) / SQRT2, (u - v) / SQRT2, 0.6))


def _diamond(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (np.abs(u) + np.abs(v) - 1.0) / SQRT2


def _diagonal_cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    arms = np.minimum(np.abs(u - v), np.abs(u + v)) / SQRT2 - 0.25
    return np.maximum(_box(u, v, 0.9, 0.9), arms)


def _frame(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(_box(u, v, 0.9, 0.9), -_box(u, v, 0.5, 0.5))


def _dots(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.hypot(np.abs(u) - 0.5, np.abs(v) - 0.5) - 0.35


#: Shape name -> signed distance function; superclass k draws the k-th shape.
SHAPES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "disc": _disc,
    "square": _square,
    "triangle": _triangle,
    "cross": _cross,
    "ring": _ring,
    "horizontal_stripes": _horizontal_stripes,
    "vertical_stripes": _vertical_stripes,
    "diagonal_checker": _diagonal_checker,
    "diamond": _diamond,
    "diagonal_cross": _diagonal_cross,
    "frame": _frame,
    "dots": _dots,
}
SHAPE_NAMES = tuple(SHAPES)
MAX_SUPERCLASSES = len(SHAPES)


# ------------------------------------------------------------------------------ settings
def check_settings(config: SyntheticConfig) -> None:
    """Raises ConfigError for synthetic settings that cannot be drawn."""
    if not 1 <= config.num_superclasses <= MAX_SUPERCLASSES:
        raise ConfigError(f"data.synthetic.num_superclasses must be in 1..{MAX_SUPERCLASSES} "
                          f"(one shape each: {', '.join(SHAPE_NAMES)}), got "
                          f"{config.num_superclasses}")
    for key, low in (("subclasses_per_superclass", 1), ("images_per_class", 1),
                     ("image_size", 8), ("seed", 0)):
        value = getattr(config, key)
        if value < low:
            raise ConfigError(f"data.synthetic.{key} must be >= {low}, got {value}")


def hue_names(count: int) -> list[str]:
    """Readable, distinct names of ``count`` evenly spaced hues starting at red.

    Colour names (``red``, ``orange``, ...) when the hues are at least 30 degrees apart,
    else ``hue <degrees>``.
    """
    names = [COLOUR_NAMES[int(round(12 * j / count)) % 12] for j in range(count)]
    if len(set(names)) < count:
        names = [f"hue {round(360 * j / count)}" for j in range(count)]
    return names


def synthetic_hierarchy(config: SyntheticConfig) -> Hierarchy:
    """The hierarchy of the synthetic data: one superclass per shape, one subclass per hue.

    Subclass ids look like ``disc/hue0``, names like ``disc, red``.
    """
    check_settings(config)
    colours = hue_names(config.subclasses_per_superclass)
    superclasses = [
        Superclass(name=shape, subclasses=tuple(
            Subclass(id=f"{shape}/hue{j}", name=f"{shape.replace('_', ' ')}, {colour}")
            for j, colour in enumerate(colours)))
        for shape in SHAPE_NAMES[:config.num_superclasses]
    ]
    return Hierarchy(superclasses,
                     name=f"synthetic_{config.num_superclasses}x{config.subclasses_per_superclass}",
                     metadata={"source": "synthetic", **dataclasses.asdict(config)})


# ------------------------------------------------------------------------------ drawing
def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``[n]`` hue/saturation/value in [0, 1] to ``float32 [n, 3]`` RGB in [0, 1]."""
    k = np.mod(np.array([5.0, 3.0, 1.0], np.float32) + np.mod(h, 1.0)[:, None] * 6.0, 6.0)
    ramp = np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return (v[:, None] * (1.0 - s[:, None] * ramp)).astype(np.float32)


def render_class(config: SyntheticConfig, superclass: int, subclass: int) -> np.ndarray:
    """Draws the images of one class: ``uint8 [images_per_class, size, size, 3]``.

    Deterministic in ``(config.seed, superclass, subclass)`` and the class's settings.
    """
    check_settings(config)
    n, size, hues = config.images_per_class, config.image_size, config.subclasses_per_superclass
    rng = np.random.default_rng([config.seed, superclass, subclass])

    def uniform(low: float, high: float) -> np.ndarray:
        return rng.uniform(low, high, n).astype(np.float32)[:, None, None]

    # Placement: half-extent, centre (the shape stays inside the image), rotation.
    scale = uniform(0.45, 0.8)
    cx = (rng.uniform(-1, 1, n).astype(np.float32)[:, None, None]) * (1.0 - scale)
    cy = (rng.uniform(-1, 1, n).astype(np.float32)[:, None, None]) * (1.0 - scale)
    angle = uniform(-0.2, 0.2)
    grid = (np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0
    x, y = grid[None, None, :], grid[None, :, None]
    dx, dy = (x - cx) / scale, (y - cy) / scale
    u = np.cos(angle) * dx + np.sin(angle) * dy
    v = -np.sin(angle) * dx + np.cos(angle) * dy
    distance = SHAPES[SHAPE_NAMES[superclass]](u, v)
    pixel = (2.0 / size) / scale  # one pixel in shape units
    alpha = np.clip(0.5 - distance / pixel, 0.0, 1.0)

    # Colours: the class's hue (jittered) on a greyish background with a gradient.
    hue = (subclass + rng.uniform(-HUE_JITTER, HUE_JITTER, n)) / hues
    fg = _hsv_to_rgb(hue, rng.uniform(0.6, 1.0, n), rng.uniform(0.6, 1.0, n))
    bg = _hsv_to_rgb(rng.uniform(0, 1, n), rng.uniform(0, 0.25, n), rng.uniform(0, 1, n))
    phi, slope = uniform(0, 2 * np.pi), uniform(0, 0.2)
    shade = (1.0 + slope * (np.cos(phi) * x + np.sin(phi) * y)) * (1.0 - alpha)
    noise = NOISE_STD * rng.standard_normal(alpha.shape, dtype=np.float32)  # luminance noise
    # Channel-first, then one transpose: numpy broadcasts over a last axis of 3 slowly.
    image = bg.T[:, :, None, None] * shade + fg.T[:, :, None, None] * alpha + noise
    image = np.clip(image * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)  # rounds
    return np.ascontiguousarray(image.transpose(1, 2, 3, 0))


def generate_images(config: SyntheticConfig) -> tuple[np.ndarray, np.ndarray]:
    """All synthetic images, class by class in fine-label order.

    Returns:
        ``uint8 [N, size, size, 3]`` images and their ``int32 [N]`` fine labels, with
        ``N = num_superclasses * subclasses_per_superclass * images_per_class``.
    """
    check_settings(config)
    hues, n = config.subclasses_per_superclass, config.images_per_class
    images = np.empty((config.num_superclasses * hues * n, config.image_size,
                       config.image_size, 3), np.uint8)
    for k in range(config.num_superclasses):
        for j in range(hues):
            fine = k * hues + j
            images[fine * n:(fine + 1) * n] = render_class(config, k, j)
    fine = np.repeat(np.arange(config.num_superclasses * hues, dtype=np.int32), n)
    return images, fine


def write_synthetic_tree(root: str | Path, config: SyntheticConfig, fmt: str = "png") -> Path:
    """Writes the synthetic images as a ``root/<superclass>/<subclass>/<k>.<fmt>`` tree.

    Subclass folders are named ``<colour>_<shape>`` (``red_disc``, ``spring_green_disc``),
    so the ``folder`` source reads them as subclasses named ``red disc`` and so on. PNG
    keeps the pixels exactly; JPEG is written at quality 95.

    Args:
        root: Folder to write into (created if needed).
        config: What to draw; the images equal those of the ``synthetic`` source.
        fmt: ``png``, ``jpg`` or ``jpeg``.

    Returns:
        The root folder.
    """
    from PIL import Image

    if fmt.lower() not in ("png", "jpg", "jpeg"):
        raise ConfigError(f"write_synthetic_tree: fmt must be png, jpg or jpeg, got {fmt!r}")
    check_settings(config)
    root = Path(root)
    options = {} if fmt.lower() == "png" else {"quality": 95}
    colours = hue_names(config.subclasses_per_superclass)
    for k, shape in enumerate(SHAPE_NAMES[:config.num_superclasses]):
        for j, colour in enumerate(colours):
            folder = root / shape / f"{colour.replace(' ', '_')}_{shape}"
            folder.mkdir(parents=True, exist_ok=True)
            for i, image in enumerate(render_class(config, k, j)):
                Image.fromarray(image).save(folder / f"{i}.{fmt}", **options)
    return root


# ------------------------------------------------------------------------------ source
class SyntheticSource(ListSource):
    """Synthetic shapes-in-colours images drawn from ``data.synthetic``.

    The images are drawn in memory when a split is first requested; ``train``, ``val``
    and ``test`` are held out per class by ``data.val_fraction``, ``data.test_fraction``
    and ``data.split_seed``.

    Args:
        config: Data settings; ``config.synthetic`` says what to draw, ``config.preset``
            is ignored (the hierarchy is the shapes and hues).
    """

    def __init__(self, config: DataConfig) -> None:
        super().__init__(config)
        self.settings = config.synthetic
        self._hierarchy = synthetic_hierarchy(self.settings)

    @property
    def description(self) -> str:
        s = self.settings
        return (f"synthetic images ({s.num_superclasses} shapes x {s.subclasses_per_superclass} "
                f"hues, {s.images_per_class} per class, {s.image_size}px, seed {s.seed})")

    def official_splits(self) -> dict[str, Examples]:
        images, fine = generate_images(self.settings)
        n = self.settings.images_per_class
        ids = self._hierarchy.class_ids
        names = np.array([f"synthetic/{ids[label]}/{i % n}" for i, label in enumerate(fine)],
                         dtype=object)
        return {"all": Examples(images, fine, "array", names)}
