"""Pillow's bilinear resize + crop of a frame, several times faster, with Pillow's values.

    from transforms.resample import Geometry, resize_crop_into
    g = Geometry(box=(40, 0, 280, 240), size=(112, 112), window=(0, 0, 112, 112))
    resize_crop_into(img, g, dst)   # dst: uint8 [3, 112, 112] (rows contiguous)

``Geometry(box, size, window)`` stands for ``img.crop(box).resize(size, Image.BILINEAR)
.crop(window)`` (:func:`resize_crop_pil`), the one form of both spatial transforms of
``transforms.spatial``. :func:`resize_crop_into` writes that image's three channels into
``dst`` (planes: channel, row, column) with a small C kernel (``resample.c``) that does
Pillow's integer arithmetic (its two passes, 22-bit weights and rounding) over whole rows
at once: about 0.05 ms instead of Pillow's 0.25 ms for a 320x240 frame to 112x112, the
values equal to the bit. Where the kernel cannot serve (no C compiler, an image mode
other than RGB, a window reaching outside the resized image), Pillow does it. Before a
geometry's first frame in a process, an image of random pixels is resized both ways
(:func:`pass_order`): that finds the order of the two passes this Pillow takes, and a
Pillow whose resampling ever changed is noticed (a warning) and followed.

The weights are computed here in Python, in Pillow's order of double-precision operations
(``bilinear_taps``), so no compiler's floating-point contraction can change them; the
kernel itself only adds integers. The kernel is compiled on first use with the system's C
compiler and cached (``core/cbuild.py``).
"""
import ctypes
import functools
import math
import os
import threading
import warnings
from typing import NamedTuple, Tuple

import numpy as np
from PIL import Image

from core.cbuild import Library, build

PRECISION_BITS = 22  # Pillow's 8-bit resampling: 32 - 8 - 2
_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resample.c")


class Geometry(NamedTuple):
    """``img.crop(box).resize(size, BILINEAR).crop(window)``: boxes as (x1, y1, x2, y2)."""
    box: Tuple[int, int, int, int]
    size: Tuple[int, int]
    window: Tuple[int, int, int, int]


def image_size(img):
    """``(width, height)`` of a PIL image or of an RGBX array ``[height, width, 4]`` (what
    ``datasets.jpeg`` decodes frames into; X is padding)."""
    if isinstance(img, np.ndarray):
        return img.shape[1], img.shape[0]
    return img.size


def as_pil(img):
    """A PIL RGB image of the same pixels (an RGBX array is copied; a PIL image is kept)."""
    if isinstance(img, np.ndarray):
        return Image.frombuffer("RGB", image_size(img), np.ascontiguousarray(img), "raw",
                                "RGBX", 0, 1)
    return img


def _is_rgb(img):
    return isinstance(img, np.ndarray) or img.mode == "RGB"


def resize_crop_pil(img, g):
    """The geometry ``g`` done by Pillow (a crop to the whole image is skipped: same values)."""
    img = as_pil(img)
    if tuple(g.box) != (0, 0) + img.size:
        img = img.crop(g.box)
    img = img.resize(g.size, Image.BILINEAR)
    if tuple(g.window) != (0, 0) + tuple(g.size):
        img = img.crop(g.window)
    return img


# ---------------------------------------------------------------- Pillow's weights
@functools.lru_cache(maxsize=256)
def bilinear_taps(in_size, out_size):
    """Pillow's bilinear filter from ``in_size`` to ``out_size`` samples along one axis.

    Returns ``(first, count, weights)``: output ``i`` is the sum over ``t < count[i]`` of
    ``source[first[i] + t] * weights[i, t]``, plus 2^21, shifted right by 22 bits and
    clamped to 0..255. The steps and their order are libImaging/Resample.c's
    (``precompute_coeffs`` on the box (0, in_size), then ``normalize_coeffs_8bpc``), in
    Python floats (IEEE doubles), so the integers are the ones Pillow computes.
    """
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale          # bilinear support 1, widened when downscaling
    ksize = int(math.ceil(support)) * 2 + 1
    ss = 1.0 / filterscale
    first = np.zeros(out_size, np.int32)
    count = np.zeros(out_size, np.int32)
    weights = np.zeros((out_size, ksize), np.int32)
    for i in range(out_size):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        w = []
        for x in range(lo, hi):
            d = abs((x - center + 0.5) * ss)
            w.append(1.0 - d if d < 1.0 else 0.0)
        total = 0.0
        for v in w:
            total += v
        for t, v in enumerate(w):
            if total != 0.0:
                v /= total
            weights[i, t] = int(-0.5 + v * (1 << PRECISION_BITS)) if v < 0 else \
                int(0.5 + v * (1 << PRECISION_BITS))
        first[i], count[i] = lo, hi - lo
    for a in (first, count, weights):
        a.setflags(write=False)
    return first, count, weights


class _Axis(NamedTuple):
    start: int           # first source pixel read
    length: int          # source pixels read
    bounds: np.ndarray   # [n, 2] int32: (first tap relative to start, tap count)
    weights: np.ndarray  # [n, ksize] int32


def _axis(box_lo, box_hi, out_size, win_lo, win_hi):
    """The taps of output samples [win_lo, win_hi) of a resize of source samples
    [box_lo, box_hi) to out_size, in source coordinates."""
    first, count, weights = bilinear_taps(box_hi - box_lo, out_size)
    first, count = first[win_lo:win_hi] + box_lo, count[win_lo:win_hi]
    start = int(first.min())
    length = int((first + count).max()) - start
    bounds = np.ascontiguousarray(np.stack([first - start, count], 1), dtype=np.int32)
    return _Axis(start, length, bounds, np.ascontiguousarray(weights[win_lo:win_hi]))


def fits(g, width, height):
    """Whether the kernel can do ``g`` on a ``width`` x ``height`` image (else: Pillow)."""
    (bx1, by1, bx2, by2), (w, h), (wx1, wy1, wx2, wy2) = g
    return (0 <= bx1 < bx2 <= width and 0 <= by1 < by2 <= height and w > 0 and h > 0
            and 0 <= wx1 < wx2 <= w and 0 <= wy1 < wy2 <= h)


# ---------------------------------------------------------------- the compiled kernel
class _Plan(ctypes.Structure):
    """resample.c's ``struct plan``: one geometry on images of one width, one pass order."""
    _fields_ = [("src_stride", ctypes.c_ssize_t)] + [
        (name, ctypes.c_int) for name in
        ("x0", "nx", "y0", "ny", "ow", "oh", "hks", "vks", "vertical_first")] + [
        (name, ctypes.c_void_p) for name in ("hb", "hk", "vb", "vk")]


def _make_plan(lib, g, width, vertical_first):
    (bx1, by1, bx2, by2), (w, h), (wx1, wy1, wx2, wy2) = g
    ax, ay = _axis(bx1, bx2, w, wx1, wx2), _axis(by1, by2, h, wy1, wy2)
    plan = _Plan(width, ax.start, ax.length, ay.start, ay.length, len(ax.bounds),
                 len(ay.bounds), ax.weights.shape[1], ay.weights.shape[1], int(vertical_first),
                 ax.bounds.ctypes.data, ax.weights.ctypes.data, ay.bounds.ctypes.data,
                 ay.weights.ctypes.data)
    plan.tables = (ax, ay)  # the arrays the pointers point into live as long as the plan
    plan.work_words = lib.resample_work_words(ctypes.byref(plan))
    return plan


def _load():
    lib = ctypes.CDLL(build(_SOURCE))
    p, z = ctypes.c_void_p, ctypes.c_ssize_t
    lib.resample_rgbx.argtypes = [ctypes.POINTER(_Plan), p, p, z, z, p]
    lib.resample_rgbx.restype = None
    lib.resample_work_words.argtypes = [ctypes.POINTER(_Plan)]
    lib.resample_work_words.restype = ctypes.c_size_t
    return lib


#: The ctypes kernel, loaded (and built) on first call; None if unavailable, with one warning.
kernel = Library(_load, "the resampling kernel", "frames are resized with Pillow")

_scratch = threading.local()


def _work(words):
    buf = getattr(_scratch, "buf", None)
    if buf is None or buf.size < words:
        buf = _scratch.buf = np.empty(int(words), np.uint32)
    return buf


class _ArrowArray(ctypes.Structure):
    """The Arrow C data interface's ``struct ArrowArray`` (a stable ABI)."""


_ArrowArray._fields_ = [
    ("length", ctypes.c_int64), ("null_count", ctypes.c_int64), ("offset", ctypes.c_int64),
    ("n_buffers", ctypes.c_int64), ("n_children", ctypes.c_int64),
    ("buffers", ctypes.POINTER(ctypes.c_void_p)),
    ("children", ctypes.POINTER(ctypes.POINTER(_ArrowArray))),
    ("dictionary", ctypes.c_void_p), ("release", ctypes.c_void_p),
    ("private_data", ctypes.c_void_p)]
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def _pixels(img):
    """``(owner, address)`` of the RGB image's pixels, 4 bytes (R G B X) each, row after
    row; the pixels stay valid while ``owner`` lives. An RGBX array is its own owner.

    Pillow (11.2 and later) lends its own memory through the Arrow C data interface (an
    RGB image is an array of 4-byte fixed-size lists); otherwise, or for an image whose
    rows are not contiguous (larger than Pillow's 16 MB blocks), ``tobytes`` copies them.
    The copy is what the loan saves: a new 300 kB buffer per 320x240 frame, which the
    allocator takes from and gives back to the system each time, paying in page faults
    3x the kernel's own time."""
    if isinstance(img, np.ndarray):
        if not (img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 4
                and img.flags.c_contiguous):
            raise ValueError(f"expected a contiguous uint8 RGBX array, not {img.dtype} {img.shape}")
        return img, img.ctypes.data
    try:
        _, capsule = img.__arrow_c_array__()
        array = _ArrowArray.from_address(_capsule_pointer(capsule, b"arrow_array"))
        child = array.children[0].contents
        if (array.n_children == 1 and child.length == 4 * img.size[0] * img.size[1]
                and child.offset == 0 and child.buffers[1]):
            return capsule, child.buffers[1]
    except (AttributeError, ValueError, NotImplementedError):
        pass
    data = img.tobytes("raw", "RGBX")
    return data, np.frombuffer(data, np.uint8).ctypes.data


def _run(lib, plan, img, dst):
    rows, cols = plan.oh, plan.ow
    if (dst.dtype != np.uint8 or dst.shape != (3, rows, cols) or dst.strides[2] != 1
            or not dst.flags.writeable):
        raise ValueError(f"dst must be writable uint8 [3, {rows}, {cols}] with contiguous rows, "
                         f"not {dst.dtype} {dst.shape} strides {dst.strides}")
    owner, src = _pixels(img)  # owner keeps the pixels alive until the kernel returns
    lib.resample_rgbx(plan, src, dst.ctypes.data, dst.strides[0], dst.strides[1],
                      _work(plan.work_words).ctypes.data)


def kernel_into(img, g, dst, vertical_first=False):
    """Write ``resize_crop_pil(img, g)`` into ``dst`` (uint8 ``[3, rows, columns]``, the
    last axis contiguous) with the kernel, its passes in the order given (Pillow's order
    is found by :func:`pass_order`); False (``dst`` untouched) where the kernel cannot
    serve, see the module docstring."""
    lib = kernel()
    if lib is None or not _is_rgb(img) or not fits(g, *image_size(img)):
        return False
    _run(lib, _make_plan(lib, g, image_size(img)[0], vertical_first), img, dst)
    return True


PROBES = 8    # random images tried at most to tell the two orders apart


def pass_order(g, size):
    """The kernel's pass order (``False``: horizontal first, ``True``: vertical first)
    that gives this Pillow's values for ``g`` on images of ``size``; None if neither
    does (or the kernel cannot serve), with a warning.

    Tried on images of random pixels, on which the two orders differ in the rounding of
    many pixels (a real frame, black or flat, may not tell them apart): the whole
    resized image is compared, for up to ``PROBES`` images until only one order agrees
    with Pillow (where both agree on all of them, the passes commute here, e.g. one of
    them is the identity). Pillow 13 runs the vertical pass first when the height shrinks
    more than twice as much as the width; earlier versions never do."""
    whole = Geometry(g.box, g.size, (0, 0) + tuple(g.size))
    agree = [True, True]
    for seed in range(PROBES):
        noise = Image.fromarray(np.random.default_rng(seed).integers(
            0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")
        ref = np.asarray(resize_crop_pil(noise, whole)).transpose(2, 0, 1)
        out = np.empty(ref.shape, np.uint8)
        for order in (0, 1):
            if agree[order]:
                if not kernel_into(noise, whole, out, order):
                    return None
                agree[order] = np.array_equal(out, ref)
        if agree.count(True) < 2:
            break
    if not any(agree):
        warnings.warn(f"the resampling kernel does not reproduce this Pillow "
                      f"({Image.__version__}) on {g}; that geometry is resized by Pillow")
        return None
    return bool(agree.index(True))


_plans = {}  # (Geometry, image size) -> _Plan in Pillow's pass order, or None: Pillow


def resize_crop_into(img, g, dst):
    """``dst[...] = np.asarray(resize_crop_pil(img, g)).transpose(2, 0, 1)`` (``img`` a PIL
    image or an RGBX array), by the kernel where it serves (in :func:`pass_order`'s order, found once per geometry, image size
    and process), else by Pillow. Returns "kernel" or "pillow"."""
    size = image_size(img)
    key = (g, size)
    plan = _plans.get(key, False)
    if plan is False:
        lib = kernel()
        usable = lib is not None and _is_rgb(img) and fits(g, *size)
        order = pass_order(g, size) if usable else None
        plan = _plans[key] = None if order is None else _make_plan(lib, g, size[0], order)
    if plan is not None and _is_rgb(img):
        _run(kernel(), plan, img, dst)
        return "kernel"
    dst[...] = np.asarray(resize_crop_pil(img, g)).transpose(2, 0, 1)
    return "pillow"
