"""Temporal (TSN) and spatial transforms against docs/release.md ("One sample"), on worked examples."""
import random

import numpy as np
import pytest
from PIL import Image

from tests.helpers import reference_eval, reference_train
from transforms.temporal import TSN, loop_pad
from transforms.spatial import (TrainSpatialTransform, EvalSpatialTransform, corner_crop_box,
                                center_crop_box, scale_short_side, CROP_POSITIONS)


# ---------------------------------------------------------------- temporal
def test_loop_pad_cycles_from_start():
    assert loop_pad([1, 2, 3], 8) == [1, 2, 3, 1, 2, 3, 1, 2]
    assert loop_pad([7], 3) == [7, 7, 7]
    assert loop_pad([1, 2, 3, 4], 2) == [1, 2, 3, 4]
    with pytest.raises(ValueError):
        loop_pad([], 3)


def test_tsn_short_video_is_loop_padded():
    # 5 frames, 2 segments of 4: padded to [1,2,3,4,5,1,2,3], seg = 4, only begin 0 fits
    rng = np.random.default_rng(0)
    for center in (False, True):
        out = TSN(2, 4, center=center)(range(1, 6), rng)
        assert out == [[1, 2, 3, 4], [5, 1, 2, 3]]


def test_tsn_single_frame_video():
    out = TSN(3, 4, center=True)([1])
    assert out == [[1, 1, 1, 1]] * 3


def test_tsn_center_mode():
    # 20 frames, 2 segments of 10, size 4: begin = 10//2 - 4//2 = 3
    out = TSN(2, 4, center=True)(range(1, 21))
    assert out == [[4, 5, 6, 7], [14, 15, 16, 17]]
    # remainder frames after seq_len * seg are unused: 11 frames, seg = 5, begin = 5//2 - 3//2 = 1
    assert TSN(2, 3, center=True)(range(1, 12)) == [[2, 3, 4], [7, 8, 9]]
    # odd snippet size: 9 frames in one segment, size 5: begin = 4 - 2 = 2
    assert TSN(1, 5, center=True)(range(1, 10)) == [[3, 4, 5, 6, 7]]


def test_tsn_random_bounds_with_off_by_one():
    # 20 frames, 2 segments of 10, size 4: begin in [0, 10 - 4 - 1] = [0, 5], never 6
    tsn = TSN(2, 4)
    firsts = [set(), set()]
    for seed in range(400):
        out = tsn(range(1, 21), np.random.default_rng(seed))
        for i, snip in enumerate(out):
            assert len(snip) == 4
            assert snip == list(range(snip[0], snip[0] + 4))
            firsts[i].add(snip[0] - (1 + 10 * i))
    assert firsts[0] == set(range(6)) and firsts[1] == set(range(6))


def test_tsn_random_segment_one_longer_than_size_never_moves():
    # seg = size + 1: randint(0, 0) -> the release never takes the last start (1)
    tsn = TSN(2, 4)
    for seed in range(50):
        assert tsn(range(1, 11), random.Random(seed)) == [[1, 2, 3, 4], [6, 7, 8, 9]]


def test_tsn_random_accepts_both_rng_kinds_and_is_reproducible():
    tsn = TSN(3, 4)
    a = tsn(range(1, 100), np.random.default_rng([1, 2, 3]))
    b = tsn(range(1, 100), np.random.default_rng([1, 2, 3]))
    assert a == b
    c = tsn(range(1, 100), random.Random(5))
    d = tsn(range(1, 100), random.Random(5))
    assert c == d
    with pytest.raises(ValueError):
        tsn(range(1, 100))


def test_tsn_default_config_shape():
    out = TSN(12, 16)(range(1, 3211), np.random.default_rng(0))
    assert len(out) == 12 and all(len(s) == 16 for s in out)
    seg = 3210 // 12
    for i, s in enumerate(out):
        assert seg * i + 1 <= s[0] <= seg * i + 1 + seg - 16 - 1


# ---------------------------------------------------------------- spatial
def _image(w, h, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(base, "RGB")


def test_corner_crop_boxes():
    assert corner_crop_box(320, 240, "c") == (40, 0, 280, 240)
    assert corner_crop_box(320, 240, "tl") == (0, 0, 240, 240)
    assert corner_crop_box(320, 240, "tr") == (80, 0, 320, 240)
    assert corner_crop_box(320, 240, "bl") == (0, 0, 240, 240)
    assert corner_crop_box(320, 240, "br") == (80, 0, 320, 240)
    assert corner_crop_box(240, 320, "c") == (0, 40, 240, 280)
    assert corner_crop_box(240, 320, "bl") == (0, 80, 240, 320)


def test_center_crop_box_uses_round():
    # 320x240 scaled to 149x112: cx = round(74.5) = 74 (Python rounds half to even)
    assert center_crop_box(149, 112, 112) == (18, 0, 130, 112)
    assert center_crop_box(150, 112, 112) == (19, 0, 131, 112)
    assert center_crop_box(112, 112, 112) == (0, 0, 112, 112)


def test_scale_short_side_sizes():
    assert scale_short_side(_image(320, 240), 112).size == (149, 112)
    assert scale_short_side(_image(240, 320), 112).size == (112, 149)
    img = _image(112, 200)
    assert scale_short_side(img, 112) is img


def test_eval_transform_equals_independent_pil_computation():
    for (w, h) in [(320, 240), (427, 240), (240, 320), (33, 25)]:
        img = _image(w, h, seed=w)
        size = 16 if w == 33 else 112
        ref = reference_eval(img, size)
        out = EvalSpatialTransform(size)(img)
        assert out.dtype == np.uint8 and out.shape == (size, size, 3)
        np.testing.assert_array_equal(out, ref)


def test_train_transform_each_augmentation_matches_pil():
    t = TrainSpatialTransform(112)
    img = _image(320, 240, seed=3)
    for position in CROP_POSITIONS:
        for aug, value in [(None, None), ("flip", None), ("rotate", 13.5), ("rotate", -20.0),
                           ("brightness", 0.6)]:
            params = {"position": position, "aug": aug, "value": value}
            out = t.apply(img, params)
            assert out.dtype == np.uint8 and out.shape == (112, 112, 3)
            np.testing.assert_array_equal(out, reference_train(img, 112, params))
    # the rotation keeps the size and fills the corners with black
    rot = t.apply(Image.new("RGB", (320, 240), (200, 200, 200)),
                  {"position": "c", "aug": "rotate", "value": 20.0})
    assert (rot[0, 0] == 0).all() and (rot[56, 56] == 200).all()


def test_train_transform_one_draw_applies_identically_to_all_frames():
    t = TrainSpatialTransform(112)
    frames = [_image(320, 240, seed=s) for s in range(4)]
    seen_aug = set()
    for seed in range(40):
        params = t.randomize(np.random.default_rng(seed))
        seen_aug.add(params["aug"])
        outs = [t(f) for f in frames]
        for f, o in zip(frames, outs):
            np.testing.assert_array_equal(o, reference_train(f, 112, params))
        assert t.params == params  # applying does not redraw
        np.testing.assert_array_equal(t(frames[0]), outs[0])
    assert {"flip", "rotate", "brightness", None} <= seen_aug


def test_train_transform_draw_distribution():
    t = TrainSpatialTransform(112)
    positions, augs = [], []
    for seed in range(3000):
        p = t.draw(np.random.default_rng([seed]))
        positions.append(p["position"])
        augs.append(p["aug"])
        if p["aug"] == "rotate":
            assert -20 <= p["value"] <= 20
        if p["aug"] == "brightness":
            assert 0.5 <= p["value"] <= 1.0
    counts = {k: positions.count(k) for k in CROP_POSITIONS}
    assert all(500 < c < 700 for c in counts.values()), counts
    frac = sum(a is not None for a in augs) / len(augs)
    assert 0.27 < frac < 0.33
    for a in ("flip", "rotate", "brightness"):
        assert 0.08 < augs.count(a) / len(augs) < 0.12
    # random.Random works as well
    assert t.draw(random.Random(1)) == t.draw(random.Random(1))


def test_train_transform_needs_randomize():
    with pytest.raises(RuntimeError):
        TrainSpatialTransform(16)(_image(20, 20))
