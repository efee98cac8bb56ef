"""Spatial transforms of VAANet on PIL images, output uint8 HWC arrays (docs/release.md,
"One sample").

Training (``TrainSpatialTransform``): parameters are drawn ONCE per video with
``randomize(rng)`` and then applied identically to every frame of every snippet:

- the largest square, at one of five positions chosen uniformly (center, top-left,
  top-right, bottom-left, bottom-right), cropped with ``Image.crop`` and resized to
  ``sample_size`` with ``Image.resize((s, s), Image.BILINEAR)`` -- the release's
  ``MultiScaleCornerCrop`` with scale 1. Its center position uses the release's integer
  arithmetic: ``cx, cy = w // 2, h // 2``, ``half = crop // 2``;
- then with probability 0.3 one of, chosen uniformly:
  horizontal flip (``Image.transpose(Image.FLIP_LEFT_RIGHT)``), rotation by U(-20, 20)
  degrees (``Image.rotate(angle, resample=Image.BILINEAR)``: same size, black corners) or
  brightness U(0.5, 1.0) (``ImageEnhance.Brightness(img).enhance(factor)``).

Evaluation (``EvalSpatialTransform``): the release's ``val`` mode: ``Scale`` (resize the
short side to ``sample_size`` with ``Image.resize(..., Image.BILINEAR)``, the long side
``int(size * long / short)``) followed by ``CenterCrop`` with the box
``cx, cy = round(w / 2), round(h / 2)``, ``half = round(size / 2)``,
``(cx - half, cy - half, cx + half, cy + half)`` (``Image.crop``).

Both return ``numpy.uint8`` arrays of shape ``[H, W, 3]`` (values 0..255, no division;
the release's ``ToTensor`` without ``/255``, before the HWC -> CHW move that the dataset
does once per sample).
"""
import random

import numpy as np
from PIL import Image, ImageEnhance

CROP_POSITIONS = ("c", "tl", "tr", "bl", "br")
AUGMENTATIONS = ("flip", "rotate", "brightness")


def _uniform(rng, low, high):
    if isinstance(rng, np.random.Generator):
        return float(rng.uniform(low, high))
    if isinstance(rng, random.Random):
        return rng.uniform(low, high)
    raise TypeError(f"rng must be a numpy Generator or random.Random, not {type(rng).__name__}")


def _choice_index(rng, n):
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(0, n))
    if isinstance(rng, random.Random):
        return rng.randrange(n)
    raise TypeError(f"rng must be a numpy Generator or random.Random, not {type(rng).__name__}")


def _random(rng):
    if isinstance(rng, np.random.Generator):
        return float(rng.random())
    if isinstance(rng, random.Random):
        return rng.random()
    raise TypeError(f"rng must be a numpy Generator or random.Random, not {type(rng).__name__}")


def corner_crop_box(width, height, position):
    """Box (x1, y1, x2, y2) of the largest square at ``position`` (one of CROP_POSITIONS)."""
    crop = min(width, height)
    if position == "c":
        cx, cy, half = width // 2, height // 2, crop // 2
        return (cx - half, cy - half, cx + half, cy + half)
    if position == "tl":
        return (0, 0, crop, crop)
    if position == "tr":
        return (width - crop, 0, width, crop)
    if position == "bl":
        return (0, height - crop, crop, height)
    if position == "br":
        return (width - crop, height - crop, width, height)
    raise ValueError(f"unknown crop position {position!r}")


def center_crop_box(width, height, size):
    """The release's CenterCrop box for a ``size`` x ``size`` crop."""
    cx, cy, half = round(width / 2), round(height / 2), round(size / 2)
    return (cx - half, cy - half, cx + half, cy + half)


def scale_short_side(img, size):
    """The release's ``Scale(size)``: short side to ``size`` (bilinear), aspect kept."""
    w, h = img.size
    if (w <= h and w == size) or (h <= w and h == size):
        return img
    if w < h:
        ow, oh = size, int(size * h / w)
    else:
        oh, ow = size, int(size * w / h)
    return img.resize((ow, oh), Image.BILINEAR)


def to_uint8_hwc(img):
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an RGB image, got array of shape {arr.shape}")
    return arr


class TrainSpatialTransform:
    """Random corner crop + resize, then maybe one augmentation; one draw per video.

    ``params = t.randomize(rng)`` draws (crop position, augmentation, its value) and
    keeps them; ``t(img)`` applies the kept parameters. ``t.apply(img, params)`` applies
    given parameters without touching the kept ones. Draw order from ``rng``: position
    index, then a U(0,1) for the 0.3 gate, then (when gated in) the augmentation index,
    then its angle or factor.
    """

    def __init__(self, size, aug_prob=0.3, max_angle=20.0, brightness=(0.5, 1.0)):
        self.size = size
        self.aug_prob = aug_prob
        self.max_angle = max_angle
        self.brightness = brightness
        self.params = None

    def draw(self, rng):
        position = CROP_POSITIONS[_choice_index(rng, len(CROP_POSITIONS))]
        aug, value = None, None
        if _random(rng) < self.aug_prob:
            aug = AUGMENTATIONS[_choice_index(rng, len(AUGMENTATIONS))]
            if aug == "rotate":
                value = _uniform(rng, -self.max_angle, self.max_angle)
            elif aug == "brightness":
                value = _uniform(rng, *self.brightness)
        return {"position": position, "aug": aug, "value": value}

    def randomize(self, rng):
        self.params = self.draw(rng)
        return self.params

    def apply_pil(self, img, params):
        w, h = img.size
        img = img.crop(corner_crop_box(w, h, params["position"]))
        img = img.resize((self.size, self.size), Image.BILINEAR)
        aug = params["aug"]
        if aug == "flip":
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        elif aug == "rotate":
            img = img.rotate(params["value"], resample=Image.BILINEAR)
        elif aug == "brightness":
            img = ImageEnhance.Brightness(img).enhance(params["value"])
        elif aug is not None:
            raise ValueError(f"unknown augmentation {aug!r}")
        return img

    def apply(self, img, params):
        return to_uint8_hwc(self.apply_pil(img, params))

    def __call__(self, img):
        if self.params is None:
            raise RuntimeError("call randomize(rng) before applying the training transform")
        return self.apply(img, self.params)

    def __repr__(self):
        return f"TrainSpatialTransform(size={self.size}, aug_prob={self.aug_prob})"


class EvalSpatialTransform:
    """Deterministic: short side to ``size`` (bilinear), then the release's center crop."""

    def __init__(self, size):
        self.size = size
        self.params = None

    def draw(self, rng=None):
        return None

    def randomize(self, rng=None):
        return None

    def apply_pil(self, img, params=None):
        img = scale_short_side(img, self.size)
        w, h = img.size
        return img.crop(center_crop_box(w, h, self.size))

    def apply(self, img, params=None):
        return to_uint8_hwc(self.apply_pil(img))

    def __call__(self, img):
        return self.apply(img)

    def __repr__(self):
        return f"EvalSpatialTransform(size={self.size})"
