"""VideoEmotion-8 / Ekman-6 dataset (SPEC sections 1 and 2) as a Jittor Dataset.

``VE8Dataset(video_path, audio_path, annotation_path, subset, ...)`` serves both VE-8
and Ekman-6 (they share the layout). Item ``i`` is ``(visual, target, audio, video_id)``:

- ``visual``: uint8 ``[seq_len, 3, snippet_duration, sample_size, sample_size]``
  (0..255; the model divides), kept uint8 by Jittor's collation;
- ``target``: int class index (collated to int32);
- ``audio``: float32 ``[4096, 32]`` MFCC features;
- ``video_id``: str (collated to a list of str).

Randomness: training items draw from ``numpy.random.default_rng([seed, epoch, index, 1])``
(temporal crops first, then the spatial parameters), so an item is a pure function of
``(seed, epoch, index)`` in whichever process computes it. The shuffled order comes from
``EpochSampler``: a permutation drawn from ``default_rng([seed, epoch, 2])``, the same in
every process (Jittor's MPI mode then shards that list per rank). ``set_epoch(epoch)``
changes both; Jittor's worker processes are forked once and keep the state they were
forked with, so ``set_epoch`` stops them (``Dataset.reset``) and the next iteration forks
new ones that see the new epoch.

Evaluation items (``train=False``, the default for the "validation" subset) use centre
temporal crops and the deterministic ``val`` spatial transform: the same pixels and
features on every call.

Speed without changing a value: MFCC features come from an on-disk cache, frames stay
uint8, and each distinct frame index of a sample is decoded and transformed once even
when loop-padding repeats it (the spatial transform is identical for every frame).
"""
import json
import os
import warnings

import numpy as np
from PIL import Image

from core.jittor_setup import jt  # noqa: F401  (configures Jittor before its import)
from jittor.dataset import Dataset

from transforms.temporal import TSN
from transforms.spatial import TrainSpatialTransform, EvalSpatialTransform
from datasets.audio import MFCCCache

ITEM_STREAM = 1    # last word of the per-item seed: keeps item and order streams apart
ORDER_STREAM = 2


class DatasetError(RuntimeError):
    """The prepared dataset is inconsistent; the message lists every problem found."""


def item_rng(seed, epoch, index):
    return np.random.default_rng([int(seed), int(epoch), int(index), ITEM_STREAM])


def order_permutation(n, seed, epoch):
    return np.random.default_rng([int(seed), int(epoch), ORDER_STREAM]).permutation(n)


def frame_file(video_dir, index):
    return os.path.join(video_dir, f"{index:06d}.jpg")


def load_frame(path):
    """``Image.open(p).convert('RGB')``; an image decoded as RGB is used as is (same values)."""
    with open(path, "rb") as f:
        img = Image.open(f)
        img.load()
        if img.mode != "RGB":
            img = img.convert("RGB")
    return img


def read_n_frames(path):
    with open(path) as f:
        return int(float(f.read().strip()))


class EpochSampler:
    """Indices in order, or (when the dataset shuffles) permuted by (seed, epoch)."""

    def __init__(self, dataset):
        self.dataset = dataset
        dataset.sampler = self

    def __iter__(self):
        d = self.dataset
        n = d.n_samples
        if d.shuffle:
            return iter(order_permutation(n, d.seed, d.epoch).tolist())
        return iter(range(n))

    def __len__(self):
        return self.dataset.n_samples


def make_dataset(video_path, audio_path, annotation_path, subset, fps=30):
    """Entries ``{video_id, label, target, video_dir, audio, frame_indices}`` of ``subset``.

    Raises DatasetError listing every problem at once; leaves out videos with
    n_frames <= 0 with one warning naming them.
    """
    problems = []
    try:
        with open(annotation_path) as f:
            ann = json.load(f)
        labels = list(ann["labels"])
        database = ann["database"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DatasetError(f"cannot read annotation file {annotation_path}: {e}") from e
    class_to_idx = {name: i for i, name in enumerate(labels)}
    step = max(1, 30 // fps)
    entries, empty = [], []
    for video_id, info in database.items():
        if info.get("subset") != subset:
            continue
        label = (info.get("annotations") or {}).get("label")
        if label not in class_to_idx:
            problems.append(f"{video_id}: label {label!r} is not among the labels {labels}")
            continue
        video_dir = os.path.join(video_path, label, video_id)
        audio_file = os.path.join(audio_path, label, video_id + ".mp3")
        own = []
        n_frames = None
        if not os.path.isdir(video_dir):
            own.append(f"{video_id}: frame folder missing: {video_dir}")
        else:
            nf_path = os.path.join(video_dir, "n_frames")
            try:
                n_frames = read_n_frames(nf_path)
            except (OSError, ValueError) as e:
                own.append(f"{video_id}: unreadable n_frames file {nf_path} ({e.__class__.__name__}: {e})")
        if n_frames is not None and n_frames <= 0:
            empty.append(video_id)
            continue
        if n_frames is not None:
            for idx in sorted({1, n_frames}):
                if not os.path.isfile(frame_file(video_dir, idx)):
                    own.append(f"{video_id}: frame {frame_file(video_dir, idx)} missing "
                               f"(n_frames says {n_frames})")
        if not os.path.isfile(audio_file):
            own.append(f"{video_id}: audio file missing: {audio_file}")
        if own:
            problems.extend(own)
            continue
        entries.append({
            "video_id": video_id,
            "label": label,
            "target": class_to_idx[label],
            "video_dir": video_dir,
            "audio": audio_file,
            "frame_indices": list(range(1, n_frames + 1, step)),
        })
    if problems:
        raise DatasetError(
            f"{len(problems)} problem(s) in the '{subset}' subset of {annotation_path} "
            f"(video_path={video_path}, audio_path={audio_path}):\n  " + "\n  ".join(problems))
    if empty:
        shown = ", ".join(empty[:20]) + (", ..." if len(empty) > 20 else "")
        warnings.warn(f"{len(empty)} video(s) of the '{subset}' subset have n_frames <= 0 "
                      f"and are left out: {shown}")
    return entries, labels


class VE8Dataset(Dataset):
    """VE-8 / Ekman-6 samples; see the module docstring.

    Jittor convention: ``len(dataset)`` is the number of *batches*; the number of videos
    is ``dataset.n_samples``.
    """

    def __init__(self, video_path, audio_path, annotation_path, subset, *, train=None,
                 fps=30, seq_len=12, snippet_duration=16, sample_size=112,
                 audio_cache=None, seed=1, epoch=0, batch_size=1, shuffle=False,
                 num_workers=0, drop_last=False):
        super().__init__()
        self.subset = subset
        self.train = (subset == "training") if train is None else bool(train)
        self.seq_len, self.snippet_duration, self.sample_size = seq_len, snippet_duration, sample_size
        self.data, self.labels = make_dataset(video_path, audio_path, annotation_path, subset, fps)
        self.n_samples = len(self.data)
        self.temporal = TSN(seq_len, snippet_duration, center=not self.train)
        self.spatial = (TrainSpatialTransform(sample_size) if self.train
                        else EvalSpatialTransform(sample_size))
        self.audio_features = MFCCCache(audio_cache)
        self.seed = int(seed)
        self.epoch = int(epoch)
        EpochSampler(self)
        self.set_attrs(total_len=self.n_samples, batch_size=batch_size, shuffle=shuffle,
                       num_workers=num_workers, drop_last=drop_last)

    # ---- epoch / seed -------------------------------------------------------------
    def set_epoch(self, epoch):
        """Use ``epoch`` for the next iteration's order and items (restarts workers)."""
        epoch = int(epoch)
        if epoch != self.epoch:
            self.epoch = epoch
            if self.train:
                # forked workers hold the old epoch: stop them; the next iteration forks
                # new ones. (Evaluation items do not depend on the epoch, and the order is
                # computed in the main process, so an evaluation set keeps its workers.)
                self.reset()
        return self

    def set_seed(self, seed):
        seed = int(seed)
        if seed != self.seed:
            self.seed = seed
            self.reset()
        return self

    # ---- items --------------------------------------------------------------------
    def snippet_indices(self, index, rng=None):
        """The ``seq_len`` lists of frame indices of item ``index`` (and the rng after them)."""
        if rng is None and self.train:
            rng = item_rng(self.seed, self.epoch, index)
        return self.temporal(self.data[index]["frame_indices"], rng), rng

    def load_visual(self, index, rng=None):
        entry = self.data[index]
        snippets, rng = self.snippet_indices(index, rng)
        params = self.spatial.draw(rng)  # one draw per video, applied to every frame
        s, t = self.seq_len, self.snippet_duration
        out = None
        decoded = {}
        for i, snippet in enumerate(snippets):
            for j, frame_idx in enumerate(snippet):
                arr = decoded.get(frame_idx)
                if arr is None:
                    img = load_frame(frame_file(entry["video_dir"], frame_idx))
                    arr = self.spatial.apply(img, params)
                    decoded[frame_idx] = arr
                if out is None:
                    out = np.empty((s, t) + arr.shape, dtype=np.uint8)
                out[i, j] = arr
        # [S, T, H, W, C] -> [S, C, T, H, W]
        return np.ascontiguousarray(out.transpose(0, 4, 1, 2, 3))

    def __getitem__(self, index):
        index = int(index)
        entry = self.data[index]
        rng = item_rng(self.seed, self.epoch, index) if self.train else None
        visual = self.load_visual(index, rng)
        audio = self.audio_features(entry["audio"])
        return visual, entry["target"], audio, entry["video_id"]

    def __repr__(self):
        return (f"VE8Dataset(subset={self.subset!r}, n_samples={self.n_samples}, train={self.train}, "
                f"seed={self.seed}, epoch={self.epoch})")
