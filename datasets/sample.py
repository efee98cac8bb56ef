"""The sample recipe: how one video becomes the model's input, for training and evaluation.

    recipe = SampleRecipe(seq_len=12, snippet_duration=16, sample_size=112, train=False)
    visual, audio, snippets = recipe(frames_dir, frame_indices(n_frames, fps), mp3)

``VE8Dataset`` (every item of a prepared dataset) and ``predict.py`` (one video extracted
on the fly) both call it, so the two cannot drift apart. Following the release (see
docs/release.md, "One sample"):

1. frame indices ``range(1, n_frames + 1, 30 // fps)`` (:func:`frame_indices`);
2. ``seq_len`` snippets of ``snippet_duration`` consecutive indices (``transforms.TSN``):
   random crops in training, centre crops in evaluation;
3. one spatial transform per video, applied to every frame of every snippet: random
   corner crop and augmentation in training, the release's ``val`` transform (short side
   to ``sample_size``, centre crop) in evaluation;
4. the MFCC features of the mp3 (``datasets.audio``).

``visual`` is uint8 ``[seq_len, 3, snippet_duration, sample_size, sample_size]`` (0..255;
the model divides), ``audio`` float32 ``[4096, 32]``, ``snippets`` the frame indices of
each snippet. Randomness comes only from the ``rng`` argument (temporal crops drawn
first, then the spatial parameters), so a training sample is a pure function of its rng.
Each distinct frame of a sample is decoded and transformed once, even when loop-padding
repeats it: the transform is the same for every frame, so the values are too. Frames are
decoded by ``datasets.jpeg`` (Pillow's libjpeg, without Pillow's per-file Python work)
and go straight into their place in ``visual``, channel-first, resized by
``transforms.resample``'s kernel (Pillow's values, see both).
"""
import numpy as np
from PIL import Image

from datasets import jpeg
from datasets.audio import mfcc_features
from datasets.errors import frame_cause, names_the_file
from datasets.media import frame_file
from transforms import resample
from transforms.spatial import EvalSpatialTransform, TrainSpatialTransform
from transforms.temporal import TSN


def frame_indices(n_frames, fps=30):
    """The frame indices a video of ``n_frames`` frames is sampled from."""
    return list(range(1, int(n_frames) + 1, max(1, 30 // int(fps))))


@names_the_file(frame_cause)
def load_frame(path):
    """``Image.open(p).convert('RGB')``; an image decoded as RGB is used as is (same values).
    A frame that cannot be read raises ``UnreadableFile`` naming it and the cause."""
    with open(path, "rb") as f:
        img = Image.open(f)
        img.load()
        if img.mode != "RGB":
            img = img.convert("RGB")
    return img


@names_the_file(frame_cause)
def read_frame(path):
    """The frame as the resize kernel reads it: ``datasets.jpeg``'s RGBX view (valid until
    the next decode in this thread) where that decoder takes the file, else ``load_frame``'s
    image; a frame that cannot be read raises ``UnreadableFile`` as ``load_frame`` does."""
    img = jpeg.decode_rgbx(path)
    return load_frame(path) if img is None else img


class SampleRecipe:
    """One video's sample, in training (``train=True``: random) or evaluation mode.

    ``audio_features`` maps an mp3 path to its ``[4096, 32]`` features: ``mfcc_features``
    by default, a ``datasets.audio.MFCCCache`` in the datasets."""

    def __init__(self, seq_len, snippet_duration, sample_size, train, audio_features=None):
        self.seq_len, self.snippet_duration, self.sample_size = seq_len, snippet_duration, sample_size
        self.train = bool(train)
        self.temporal = TSN(seq_len, snippet_duration, center=not self.train)
        self.spatial = (TrainSpatialTransform(sample_size) if self.train
                        else EvalSpatialTransform(sample_size))
        self.audio_features = audio_features or mfcc_features
        resample.kernel()  # built or loaded here, before Jittor forks its loader workers
        jpeg.decoder()

    def snippets(self, indices, rng=None):
        """The ``seq_len`` lists of frame indices (draws the temporal crops from ``rng``)."""
        return self.temporal(indices, rng)

    def visual(self, frames_dir, indices, rng=None):
        """``(visual uint8 [S, 3, T, H, W], snippets)`` from the jpgs in ``frames_dir``."""
        snippets = self.snippets(indices, rng)
        params = self.spatial.draw(rng)  # one draw per video, applied to every frame
        places = {}  # frame index -> its (snippet, position)s, in order of first use
        for i, snippet in enumerate(snippets):
            for j, index in enumerate(snippet):
                places.setdefault(index, []).append((i, j))
        out = None
        for index, ((i, j), *repeats) in places.items():
            path = frame_file(frames_dir, index)
            img = read_frame(path)  # valid until the next decode: used right away
            if out is None:
                x1, y1, x2, y2 = self.spatial.geometry(*resample.image_size(img), params).window
                out = np.empty((self.seq_len, 3, self.snippet_duration, y2 - y1, x2 - x1), np.uint8)
            self.spatial.apply_into(img, params, out[i, :, j])  # written channel-first
            for k, m in repeats:
                out[k, :, m] = out[i, :, j]
        return out, snippets

    def __call__(self, frames_dir, indices, mp3, rng=None):
        """``(visual, audio, snippets)`` of one video."""
        visual, snippets = self.visual(frames_dir, indices, rng)
        return visual, self.audio_features(mp3), snippets

    def __repr__(self):
        return (f"SampleRecipe(seq_len={self.seq_len}, snippet_duration={self.snippet_duration}, "
                f"sample_size={self.sample_size}, train={self.train})")
