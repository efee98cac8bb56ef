"""The resampling kernel (transforms/resample.py) against Pillow itself, value for value.

Every comparison is ``np.array_equal`` with what Pillow's own ``crop``, ``resize(...,
BILINEAR)`` and ``crop`` give; the positive controls show that a one-step mistake in the
weights, or the wrong order of the two passes, would be caught.
"""
import warnings

import numpy as np
import pytest
from PIL import Image

from core import cbuild
from tests.helpers import jpeg_frame, noise
from transforms import resample
from transforms.resample import (Geometry, bilinear_taps, kernel_into, pass_order,
                                 resize_crop_into, resize_crop_pil)
from transforms.spatial import CROP_POSITIONS, EvalSpatialTransform, TrainSpatialTransform

pytestmark = pytest.mark.skipif(resample.kernel() is None, reason="no C compiler for the kernel")


def pillow_planes(img, g):
    return np.asarray(resize_crop_pil(img, g)).transpose(2, 0, 1)


def kernel_planes(img, g, vertical_first=None):
    ref_shape = (3, g.window[3] - g.window[1], g.window[2] - g.window[0])
    out = np.empty(ref_shape, np.uint8)
    if vertical_first is None:
        vertical_first = pass_order(g, img.size)
    assert kernel_into(img, g, out, vertical_first)
    return out


def random_geometries(n, seed, max_in=90, max_out=120):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        w, h = (int(v) for v in rng.integers(1, max_in, 2))
        bx1, by1 = int(rng.integers(0, w)), int(rng.integers(0, h))
        bx2, by2 = int(rng.integers(bx1 + 1, w + 1)), int(rng.integers(by1 + 1, h + 1))
        ow, oh = (int(v) for v in rng.integers(1, max_out, 2))
        wx1, wy1 = int(rng.integers(0, ow)), int(rng.integers(0, oh))
        wx2, wy2 = int(rng.integers(wx1 + 1, ow + 1)), int(rng.integers(wy1 + 1, oh + 1))
        yield (w, h), Geometry((bx1, by1, bx2, by2), (ow, oh), (wx1, wy1, wx2, wy2))


# frame sizes after the release's extraction (height 240) and a few others, the sample
# sizes of the release, the demo and the tests, and an odd one
FRAME_SIZES = [(320, 240), (427, 240), (426, 240), (240, 320), (180, 240), (135, 240),
               (352, 288), (640, 480), (1280, 720), (112, 112), (113, 200), (64, 48)]
SAMPLE_SIZES = [112, 64, 16, 224, 113]


def transform_geometries():
    for w, h in FRAME_SIZES:
        for s in SAMPLE_SIZES:
            for position in CROP_POSITIONS:
                yield (w, h), TrainSpatialTransform(s).geometry(w, h, {"position": position})
            yield (w, h), EvalSpatialTransform(s).geometry(w, h)


# ---------------------------------------------------------------- the kernel is Pillow
def test_kernel_equals_pillow_on_random_geometries():
    # crops, upscaling and downscaling up to 90x, 1-pixel sizes, windows of any part
    n = 0
    for (w, h), g in random_geometries(3000, seed=1):
        img = noise(w, h, seed=n)
        np.testing.assert_array_equal(kernel_planes(img, g), pillow_planes(img, g), err_msg=str(g))
        n += 1
    assert n == 3000


def test_kernel_equals_pillow_on_the_transforms_geometries():
    # every crop position and the centre crop of the evaluation, on real JPEG frames
    # (by resize_crop_into, the dataset's way, with its pass order found once per geometry)
    for k, ((w, h), g) in enumerate(transform_geometries()):
        for img in (jpeg_frame(w, h, seed=k), noise(w, h, seed=k)):
            ref = pillow_planes(img, g)
            out = np.empty(ref.shape, np.uint8)
            assert resize_crop_into(img, g, out) == "kernel"
            np.testing.assert_array_equal(out, ref, err_msg=f"{w}x{h} {g}")


def test_both_pass_orders_are_pillows_where_pillow_takes_them():
    # Pillow 13 runs the vertical pass first when the height shrinks more than twice as
    # much as the width (earlier versions: never); the probe finds what this Pillow does
    vf_geometries = 0
    for (w, h), g in random_geometries(400, seed=2):
        bw, bh = g.box[2] - g.box[0], g.box[3] - g.box[1]
        (ow, oh), img = g.size, noise(w, h, seed=7)
        order = pass_order(g, (w, h))
        assert order is not None
        if order:
            vf_geometries += 1
            assert 0 < bh - oh and bh - oh > 2 * (bw - ow)
        np.testing.assert_array_equal(kernel_planes(img, g, order), pillow_planes(img, g))
    major = int(Image.__version__.split(".")[0])
    assert (vf_geometries > 0) == (major >= 13)


def test_positive_controls_wrong_order_and_off_by_one_weights(monkeypatch):
    img = noise(60, 90, seed=3)
    # the wrong order of the passes: many values differ
    g = Geometry((0, 0, 60, 90), (50, 20), (0, 0, 50, 20))
    order = pass_order(g, img.size)
    assert np.count_nonzero(kernel_planes(img, g, not order) != pillow_planes(img, g)) > 100
    # weights rounded down instead of to nearest (one unit of 2^-22 off): caught
    cases = [(im, g, pass_order(g, im.size)) for (w, h), g in random_geometries(300, seed=4)
             for im in [noise(w, h, seed=w * h)]]
    true_taps = bilinear_taps.__wrapped__

    def floor_taps(in_size, out_size):
        first, count, weights = true_taps(in_size, out_size)
        return first, count, np.where(weights > 0, weights - 1, weights)

    monkeypatch.setattr(resample, "bilinear_taps", floor_taps)
    differs = sum(not np.array_equal(kernel_planes(im, g, order), pillow_planes(im, g))
                  for im, g, order in cases)
    assert differs > 10


# ---------------------------------------------------------------- Pillow where needed
def test_resize_crop_into_uses_pillow_where_the_kernel_cannot(monkeypatch):
    img = jpeg_frame(33, 25)
    # the release's CenterCrop of an odd size reaches outside the image: Pillow pads
    g = EvalSpatialTransform(15).geometry(33, 25)
    assert not resample.fits(g, 33, 25)
    out = np.empty((3, 16, 16), np.uint8)
    assert resize_crop_into(img, g, out) == "pillow"
    np.testing.assert_array_equal(out, pillow_planes(img, g))
    # no kernel (no compiler): Pillow, same values
    g = TrainSpatialTransform(16).geometry(33, 25, {"position": "tl"})
    monkeypatch.setattr(resample.kernel, "lib", False)
    monkeypatch.setattr(resample, "_plans", {})
    out = np.zeros((3, 16, 16), np.uint8)
    assert resize_crop_into(img, g, out) == "pillow"
    np.testing.assert_array_equal(out, pillow_planes(img, g))


def test_a_kernel_that_disagrees_with_pillow_is_not_used(monkeypatch):
    # as if the installed Pillow resampled differently: the probe notices, warns, and the
    # geometry is done by Pillow
    true_taps = bilinear_taps.__wrapped__
    monkeypatch.setattr(resample, "bilinear_taps",
                        lambda i, o: (lambda f, c, w: (f, c, w // 2))(*true_taps(i, o)))
    monkeypatch.setattr(resample, "_plans", {})
    img, g = jpeg_frame(80, 60), Geometry((10, 0, 70, 60), (24, 24), (0, 0, 24, 24))
    out = np.empty((3, 24, 24), np.uint8)
    with pytest.warns(UserWarning, match="does not reproduce this Pillow"):
        assert resize_crop_into(img, g, out) == "pillow"
    np.testing.assert_array_equal(out, pillow_planes(img, g))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # decided once: no second probe, no second warning
        assert resize_crop_into(img, g, out) == "pillow"


def test_kernel_reads_pillows_memory_or_a_copy():
    img = jpeg_frame(40, 30)
    owner, address = resample._pixels(img)
    lent = np.ctypeslib.as_array((resample.ctypes.c_uint8 * (40 * 30 * 4)).from_address(address))
    np.testing.assert_array_equal(lent.reshape(30, 40, 4)[..., :3], np.asarray(img))
    # rows in several blocks (an image over Pillow's 16 MB block): a copy, same values
    big = Image.new("RGB", (2600, 1700), (1, 2, 3))
    g = Geometry((5, 7, 2505, 1607), (30, 20), (0, 0, 30, 20))
    np.testing.assert_array_equal(kernel_planes(big, g), pillow_planes(big, g))


def test_build_failure_warns_and_falls_back(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setattr(cbuild.shutil, "which",
                        lambda name: str(tmp_path / "false-cc") if name else None)
    (tmp_path / "false-cc").write_text("#!/bin/sh\necho 'cc: broken' >&2\nexit 1\n")
    (tmp_path / "false-cc").chmod(0o755)
    with pytest.raises(RuntimeError, match="cc: broken"):
        cbuild.build(resample._SOURCE, folder=str(tmp_path / "cache"))
    monkeypatch.setattr(cbuild, "cache_dir", lambda: str(tmp_path / "cache"))
    monkeypatch.setattr(resample.kernel, "lib", None)
    with pytest.warns(UserWarning, match="kernel is unavailable"):
        assert resample.kernel() is None
    assert list((tmp_path / "cache").iterdir()) == []  # no half-written kernel left behind
