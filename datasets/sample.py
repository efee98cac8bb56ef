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
repeats it: the transform is the same for every frame, so the values are too.
"""
import numpy as np
from PIL import Image

from datasets.audio import mfcc_features
from datasets.media import frame_file
from transforms.spatial import EvalSpatialTransform, TrainSpatialTransform
from transforms.temporal import TSN


def frame_indices(n_frames, fps=30):
    """The frame indices a video of ``n_frames`` frames is sampled from."""
    return list(range(1, int(n_frames) + 1, max(1, 30 // int(fps))))


def load_frame(path):
    """``Image.open(p).convert('RGB')``; an image decoded as RGB is used as is (same values)."""
    with open(path, "rb") as f:
        img = Image.open(f)
        img.load()
        if img.mode != "RGB":
            img = img.convert("RGB")
    return img


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

    def snippets(self, indices, rng=None):
        """The ``seq_len`` lists of frame indices (draws the temporal crops from ``rng``)."""
        return self.temporal(indices, rng)

    def visual(self, frames_dir, indices, rng=None):
        """``(visual uint8 [S, 3, T, H, W], snippets)`` from the jpgs in ``frames_dir``."""
        snippets = self.snippets(indices, rng)
        params = self.spatial.draw(rng)  # one draw per video, applied to every frame
        out = None
        decoded = {}
        for i, snippet in enumerate(snippets):
            for j, index in enumerate(snippet):
                arr = decoded.get(index)
                if arr is None:
                    arr = self.spatial.apply(load_frame(frame_file(frames_dir, index)), params)
                    decoded[index] = arr
                if out is None:
                    out = np.empty((self.seq_len, self.snippet_duration) + arr.shape, dtype=np.uint8)
                out[i, j] = arr
        # [S, T, H, W, C] -> [S, C, T, H, W]
        return np.ascontiguousarray(out.transpose(0, 4, 1, 2, 3)), snippets

    def __call__(self, frames_dir, indices, mp3, rng=None):
        """``(visual, audio, snippets)`` of one video."""
        visual, snippets = self.visual(frames_dir, indices, rng)
        return visual, self.audio_features(mp3), snippets

    def __repr__(self):
        return (f"SampleRecipe(seq_len={self.seq_len}, snippet_duration={self.snippet_duration}, "
                f"sample_size={self.sample_size}, train={self.train})")
