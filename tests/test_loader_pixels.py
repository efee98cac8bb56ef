"""The loader's pixels against a plain Pillow computation of the sample recipe.

One frame: each spatial transform's ``apply_into`` (the kernel, the augmentation on the
small frame) equals its ``apply`` (Pillow all the way), for every crop position and
augmentation. Whole samples: ``VE8Dataset`` resizes frames with the kernel of ``transforms/resample.py`` and writes them
channel-first straight into the sample; this recomputes every training and evaluation
sample of a small dataset the plain way (``Image.open(f).convert("RGB")``, ``crop``,
``resize(BILINEAR)``, the augmentation, per frame, as the release does) and asks for
equal arrays: 2 configurations x 6 videos x 4 seeds x 5 epochs training samples (all
crop positions and augmentations among them) and every evaluation sample, on frames
extracted by ffmpeg (320x240, 180x240) and JPEGs of other sizes, short videos included.
"""
import json
import os

import numpy as np
import pytest
from PIL import Image

from datasets.catalog import DATASETS
from datasets.media import extract_frames, frame_file
from datasets.ve8 import VE8Dataset, item_rng
from tests.helpers import (jpeg_frame, make_frames, make_mp3, noise, reference_eval,
                           reference_train)
from transforms import resample, spatial
from transforms.spatial import (CROP_POSITIONS, EvalSpatialTransform, TrainSpatialTransform,
                                brightness_table)
from transforms.temporal import TSN

VE8 = DATASETS["ve8"]
SEQ, DUR = 3, 4
SEEDS, EPOCHS = range(1, 5), range(5)


# ---------------------------------------------------------------- one frame
def test_apply_into_equals_apply_for_every_position_and_augmentation():
    for w, h in [(320, 240), (240, 320), (427, 240), (64, 48), (112, 112)]:
        for k, img in enumerate((jpeg_frame(w, h, seed=w), noise(w, h, seed=h))):
            for s in (112, 24):
                t = TrainSpatialTransform(s)
                for position in CROP_POSITIONS:
                    for aug, value in [(None, None), ("flip", None), ("rotate", 13.5 - 7 * k),
                                       ("brightness", 0.5 + 0.37 * k), ("brightness", 1.0)]:
                        params = {"position": position, "aug": aug, "value": value}
                        out = np.empty((3, s, s), np.uint8)
                        t.apply_into(img, params, out)
                        np.testing.assert_array_equal(out, t.apply(img, params).transpose(2, 0, 1),
                                                      err_msg=f"{w}x{h} {s} {params}")
                e = EvalSpatialTransform(s)
                out = np.empty((3, s, s), np.uint8)
                e.apply_into(img, None, out)
                np.testing.assert_array_equal(out, e.apply(img).transpose(2, 0, 1))


def test_brightness_table_is_pillows_mapping():
    from PIL import ImageEnhance
    ramp = Image.fromarray(np.repeat(np.arange(256, dtype=np.uint8).reshape(16, 16, 1), 3, 2))
    for factor in np.random.default_rng(5).uniform(0.5, 1.0, 200).tolist() + [0.5, 1.0]:
        ref = np.asarray(ImageEnhance.Brightness(ramp).enhance(factor))[..., 1].reshape(256)
        np.testing.assert_array_equal(brightness_table(factor), ref)
    # a mapping, not the identity: a wrong table would show
    assert not np.array_equal(brightness_table(0.7), np.arange(256))
    assert spatial.brightness_table(0.7) is brightness_table(0.7)  # cached per factor


# ---------------------------------------------------------------- whole samples
@pytest.fixture(scope="module")
def root(tmp_path_factory, make_video):
    root = tmp_path_factory.mktemp("pixels")
    frames = root / VE8.frames_folder
    mp3 = root / "a.mp3"
    make_mp3(mp3, 0.5)
    videos = {}
    # extracted by ffmpeg the dataset tools' way (height 240)
    for vid, size, n in [("wide", (320, 240), 20), ("tall", (240, 320), 17)]:
        out = frames / "Joy" / vid
        assert extract_frames(make_video(root / f"{vid}.mp4", frames=n, size=size), out) == n
        videos[vid] = "Joy"
    # JPEGs of other sizes; "short" has fewer frames than a sample (loop padding)
    for k, (vid, (w, h), n) in enumerate([("small", (64, 48), 24), ("portrait", (48, 64), 19),
                                           ("odd", (150, 101), 21), ("short", (57, 43), 5)]):
        make_frames(str(frames / "Fear" / vid), n, w, h, seed=k)
        videos[vid] = "Fear"
    db = {}
    for vid, cls in videos.items():
        os.makedirs(root / VE8.audio_folder / cls, exist_ok=True)
        os.link(mp3, root / VE8.audio_folder / cls / f"{vid}.mp3")
        db[vid] = {"subset": "training", "annotations": {"label": cls}}
    with open(root / VE8.annotation_file(1), "w") as f:
        json.dump(dict(VE8.classes.to_json(), database=db), f)
    return root


def dataset(root, train, size, seed=1, epoch=0):
    return VE8Dataset(str(root / VE8.frames_folder), str(root / VE8.audio_folder),
                      str(root / VE8.annotation_file(1)), "training", train=train,
                      seq_len=SEQ, snippet_duration=DUR, sample_size=size,
                      audio_cache=str(root / "mfcc"), seed=seed, epoch=epoch)


def plain_pillow_sample(entry, size, train, rng):
    """The recipe frame by frame in Pillow, written out independently of the port."""
    snippets = TSN(SEQ, DUR, center=not train)(entry["frame_indices"], rng)
    params = TrainSpatialTransform(size).draw(rng) if train else None
    frames = []
    for snippet in snippets:
        for index in snippet:
            img = Image.open(frame_file(entry["video_dir"], index)).convert("RGB")
            img = reference_train(img, size, params) if train else reference_eval(img, size)
            frames.append(np.asarray(img))
    visual = np.stack(frames).reshape((SEQ, DUR) + frames[0].shape).transpose(0, 4, 1, 2, 3)
    return visual, params


@pytest.mark.parametrize("size", [112, 24])
def test_loader_pixels_equal_plain_pillow(root, size, monkeypatch):
    outcomes = []
    resize = spatial.resize_crop_into

    def spy(img, g, dst):
        outcomes.append(resize(img, g, dst))
        return outcomes[-1]

    monkeypatch.setattr(spatial, "resize_crop_into", spy)
    seen = set()
    for seed in SEEDS:
        for epoch in EPOCHS:
            ds = dataset(root, True, size, seed, epoch)
            for i, entry in enumerate(ds.data):
                visual = ds[i][0]
                ref, params = plain_pillow_sample(entry, size, True, item_rng(seed, epoch, i))
                assert visual.dtype == np.uint8 and visual.flags.c_contiguous
                np.testing.assert_array_equal(visual, ref, err_msg=f"{entry['video_id']} {params}")
                seen.add(params["position"])
                seen.add(params["aug"])
    assert seen == {"c", "tl", "tr", "bl", "br", None, "flip", "rotate", "brightness"}
    ds = dataset(root, False, size)
    for i, entry in enumerate(ds.data):
        np.testing.assert_array_equal(ds[i][0], plain_pillow_sample(entry, size, False, None)[0])
    # the kernel did the resizing (no geometry fell back to Pillow)
    if resample.kernel() is not None:
        assert outcomes and set(outcomes) == {"kernel"}


def test_positive_control_a_kernel_one_unit_off_is_caught(root, monkeypatch):
    # weights one unit (2^-22) low, and no probe to notice: the comparison above must fail
    true_taps = resample.bilinear_taps.__wrapped__
    monkeypatch.setattr(resample, "bilinear_taps", lambda i, o: (
        lambda f, c, w: (f, c, np.where(w > 0, w - 1, w)))(*true_taps(i, o)))
    monkeypatch.setattr(resample, "pass_order", lambda g, size: False)
    monkeypatch.setattr(resample, "_plans", {})
    if resample.kernel() is None:
        pytest.skip("no C compiler for the kernel")
    ds = dataset(root, False, 112)
    differ = [not np.array_equal(ds[i][0], plain_pillow_sample(e, 112, False, None)[0])
              for i, e in enumerate(ds.data)]
    assert any(differ)
