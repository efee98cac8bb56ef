"""VideoEmotion-8 / Ekman-6 dataset as a Jittor Dataset (layout and samples: docs/release.md).

``VE8Dataset(video_path, audio_path, annotation_path, subset, ...)`` serves both VE-8
and Ekman-6 (they share the layout), and any dataset prepared the same way: the classes
are the annotation's (``dataset.classes``: names and polarity, ``datasets.catalog``).
Item ``i`` is ``(visual, target, audio, video_id)``, drawn by ``datasets.sample``:

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
changes both. Jittor's worker processes are forked once and keep the state they were
forked with, but for shared memory: the epoch of the pass they load is handed to them
there with the pass's index list, so they serve every epoch of a run.
``start_pass()`` hands them the next pass early (main.py: the next epoch's, during the
evaluation), and the next iteration takes it over; a pass begun for another epoch is
stopped instead.

One pass over the data loads each batch once. Jittor's own loop reads ahead: whenever a
worker is idle after every batch of the pass was handed out, it starts the workers on
another pass, with the same order and items, into buffers of 512 MB each; a training set
throws those batches away at the next epoch (the demo's training loaded each epoch's
videos 5 times over, on the cores its training steps need). So ``__iter__``
hands the workers one pass at a time. Stopping workers that are busy (an error, a pass
left half-way) no longer races either: Jittor closed the queue the workers announce their
batches on before they were idle, and a worker that announced one then died with a
traceback and a SIGINT to the main process. And the batches come in the pass's order:
Jittor's workers may announce two batches taken at once in the other order (at the start
of a pass, when both wake together), so each batch travels with the index of its first
item and is put in its place.

Evaluation items (``train=False``, the default for the "validation" subset) use centre
temporal crops and the deterministic ``val`` spatial transform: the same pixels and
features on every call.

A sample that cannot be read (a missing, empty or corrupt frame, an mp3 that cannot be
decoded) raises ``datasets.errors.SampleError``, naming the video, the file and the cause,
in the main process, also when a loader worker met it: Jittor's workers report an
exception by printing its traceback and sending SIGINT to the main process, which then
quick-exits, so a worker's ``__getitem__`` returns the error instead, ``collate_batch``
makes it the batch, and ``__iter__`` stops the workers and raises it.

Speed without changing a value: MFCC features come from an on-disk cache, frames stay
uint8, and each distinct frame index of a sample is decoded and transformed once.
"""
import multiprocessing as mp
import os
import warnings

import numpy as np

from core.jittor_setup import jt  # noqa: F401  (configures Jittor before its import)
from jittor.dataset import Dataset

from datasets.audio import MFCCCache
from datasets.catalog import AnnotationError, read_annotation
from datasets.errors import SampleError
from datasets.media import frame_file, list_frame_indices, read_n_frames
from datasets.sample import SampleRecipe, frame_indices

ITEM_STREAM = 1    # last word of the per-item seed: keeps item and order streams apart
ORDER_STREAM = 2


class DatasetError(RuntimeError):
    """The prepared dataset is inconsistent; the message lists every problem found."""


def item_rng(seed, epoch, index):
    return np.random.default_rng([int(seed), int(epoch), int(index), ITEM_STREAM])


def order_permutation(n, seed, epoch):
    return np.random.default_rng([int(seed), int(epoch), ORDER_STREAM]).permutation(n)


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
    """``(entries, classes)``: entries ``{video_id, label, target, video_dir, audio,
    frame_indices}`` of ``subset`` and the annotation's ``Classes``.

    Raises DatasetError listing every problem at once; leaves out videos with
    n_frames <= 0 with one warning naming them.
    """
    try:
        classes, database = read_annotation(annotation_path)
    except AnnotationError as e:
        raise DatasetError(str(e)) from e
    entries, problems, empty = _subset_entries(database, subset, list(classes.names),
                                               video_path, audio_path, fps)
    if problems:
        raise DatasetError(
            f"{len(problems)} problem(s) in the '{subset}' subset of {annotation_path} "
            f"(video_path={video_path}, audio_path={audio_path}):\n  " + "\n  ".join(problems))
    if empty:
        shown = ", ".join(empty[:20]) + (", ..." if len(empty) > 20 else "")
        warnings.warn(f"{len(empty)} video(s) of the '{subset}' subset have n_frames <= 0 "
                      f"and are left out: {shown}")
    return entries, classes


def _subset_entries(database, subset, labels, video_path, audio_path, fps):
    """``(entries, problems, empty)`` of the annotation ``database``'s videos of ``subset``:
    the entries of the videos that can be served, the problems of the others, and the ids
    of the videos with n_frames <= 0."""
    class_to_idx = {name: i for i, name in enumerate(labels)}
    entries, problems, empty = [], [], []
    for video_id, info in database.items():
        if info.get("subset") != subset:
            continue
        label = (info.get("annotations") or {}).get("label")
        if label not in class_to_idx:
            problems.append(f"{video_id}: label {label!r} is not among the labels {labels}")
            continue
        video_dir = os.path.join(video_path, label, video_id)
        audio_file = os.path.join(audio_path, label, video_id + ".mp3")
        n_frames, own = _check_video(video_id, video_dir, audio_file)
        if n_frames is not None and n_frames <= 0:
            empty.append(video_id)
        elif own:
            problems.extend(own)
        else:
            entries.append({
                "video_id": video_id,
                "label": label,
                "target": class_to_idx[label],
                "video_dir": video_dir,
                "audio": audio_file,
                "frame_indices": frame_indices(n_frames, fps),
            })
    return entries, problems, empty


def _check_video(video_id, video_dir, audio_file):
    """``(n_frames, problems)`` of one video's prepared files: n_frames None when it cannot
    be read; no problems for a video that can be served or has no frames (n_frames <= 0)."""
    problems, n_frames = [], None
    if not os.path.isdir(video_dir):
        problems.append(f"{video_id}: frame folder missing: {video_dir}")
    else:
        try:
            n_frames = read_n_frames(video_dir)
        except (OSError, ValueError) as e:
            problems.append(f"{video_id}: unreadable n_frames file in {video_dir} "
                            f"({e.__class__.__name__}: {e})")
    if n_frames is not None and n_frames <= 0:
        return n_frames, problems  # left out, not checked further
    if n_frames is not None:
        problems += _missing_end_frames(video_id, video_dir, n_frames)
    if not os.path.isfile(audio_file):
        problems.append(f"{video_id}: audio file missing: {audio_file}")
    return n_frames, problems


def _missing_end_frames(video_id, video_dir, n_frames):
    """One problem for each of the video's first and last frame (by ``n_frames``) missing."""
    problems = []
    for idx in sorted({1, n_frames}):
        if not os.path.isfile(frame_file(video_dir, idx)):
            found = list_frame_indices(video_dir)
            on_disk = (f"the folder's frames end at {found[-1]:06d}.jpg" if found
                       else "the folder holds no frames")
            problems.append(f"{video_id}: frame {frame_file(video_dir, idx)} missing "
                            f"(n_frames says {n_frames}, {on_disk})")
    return problems


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
        self.data, self.classes = make_dataset(video_path, audio_path, annotation_path, subset, fps)
        self.labels = list(self.classes.names)
        self.n_samples = len(self.data)
        self.audio_features = MFCCCache(audio_cache)
        self.recipe = SampleRecipe(seq_len, snippet_duration, sample_size, self.train,
                                   self.audio_features)
        self.seed = int(seed)
        self.epoch = int(epoch)
        EpochSampler(self)
        self.set_attrs(total_len=self.n_samples, batch_size=batch_size, shuffle=shuffle,
                       num_workers=num_workers, drop_last=drop_last)

    # ---- epoch -------------------------------------------------------------
    def set_epoch(self, epoch):
        """Use ``epoch`` for the next iteration's order and items."""
        self.epoch = int(epoch)
        return self

    # ---- items --------------------------------------------------------------------
    def _rng(self, index):
        if not self.train:
            return None
        # a worker loads the pass it was handed, whatever the main process's epoch now
        epoch = self._pass_epoch.value if self._in_worker else self.epoch
        return item_rng(self.seed, epoch, index)

    _in_worker = False  # True in Jittor's loader worker processes

    def __getitem__(self, index):
        index = int(index)
        if self._in_worker:
            self._batch_indices.append(index)  # for collate_batch, which sends it along
        entry = self.data[index]
        try:
            visual, audio, _ = self.recipe(entry["video_dir"], entry["frame_indices"],
                                           entry["audio"], self._rng(index))
        except Exception as e:  # noqa: BLE001  (whatever it is, it is this video's)
            where = f"in loader worker process {os.getpid()}:\n" if self._in_worker else ""
            error = SampleError.of(e, entry["video_id"], entry["label"], self.subset,
                                   entry["video_dir"], where)
            if self._in_worker:
                return error  # to the main process in the batch (see the module docstring)
            raise error from e
        return visual, entry["target"], audio, entry["video_id"]

    # ---- errors from the loader workers ------------------------------------------
    def _worker_main(self, *args):
        self._in_worker = True  # this process is one of Jittor's forked workers
        self._batch_indices = []
        return super()._worker_main(*args)

    def collate_batch(self, batch):
        """The batch (or the SampleError of an item that failed); in a worker, with the
        index of its first item, which tells the main process where it belongs."""
        error = next((item for item in batch if isinstance(item, SampleError)), None)
        collated = error if error is not None else super().collate_batch(batch)
        if not self._in_worker:
            return collated
        first, self._batch_indices = self._batch_indices[0], []
        return collated, first

    def __iter__(self):
        workers = self.num_workers and not self._disable_workers
        for batch in self._worker_pass() if workers else super().__iter__():
            if isinstance(batch, SampleError):
                self.reset()  # stop the workers: this pass over the data cannot go on
                raise batch
            yield batch

    # ---- Jittor's worker processes, one pass at a time (see the module docstring) ----
    _pass_complete = True  # False while a pass is under way, and after one left half-way
    _started = None  # what the pass begun early (start_pass) was begun for

    def start_pass(self):
        """Hand the workers the next pass now: they load its first batches while this
        process does something else; the next iteration takes it over unless the epoch
        or the batching changed since (then it is stopped). No-op without workers."""
        if self.num_workers and not self._disable_workers:
            self._begin_pass()
            self._started = self._pass_key()

    def _pass_key(self):
        return (self.epoch, self.batch_size, self.shuffle, self.drop_last)

    def _begin_pass(self):
        if hasattr(self, "workers") and not self._pass_complete:
            self.reset()  # batches of a pass left half-way are still on their way
        index_list = self._get_index_list()
        self._pass_complete = False
        if not hasattr(self, "workers"):
            self._pass_epoch = mp.Value("q", self.epoch, lock=False)  # seen by the workers
            self._init_workers(index_list)  # they start on this pass
        else:  # idle since the last pass ended: hand them this one
            with self.gid.get_lock():
                self._pass_epoch.value = self.epoch
                self.index_list_numpy[:] = index_list
                self.gid.get_obj().value = 0
                self.gidc.notify_all()

    def _worker_pass(self):
        if self._started != self._pass_key() or not hasattr(self, "workers"):
            self._begin_pass()
        self._started = None

        def arrivals():
            while True:
                yield self.workers[self.idqueue.pop()].buffer.recv()

        for batch in self._in_pass_order(arrivals()):
            yield batch if isinstance(batch, SampleError) else self.to_jittor(batch)
        self._pass_complete = True

    def _in_pass_order(self, arrivals):
        """The pass's batches in its order, from ``(batch, index of its first item)`` pairs
        as the workers announce them. A worker takes a batch number under one lock and
        announces it under another: two workers taking batches at once (at the start of a
        pass) may announce them in the other order. A SampleError ends the pass."""
        position = {int(self.index_list_numpy[k * self.real_batch_size]): k
                    for k in range(self.batch_len)}
        arrived = {}
        for k in range(self.batch_len):
            while k not in arrived:
                batch, first = next(arrivals)
                if isinstance(batch, SampleError):
                    yield batch
                    return
                arrived[position[first]] = batch
            yield arrived.pop(k)

    def reset(self):
        self._started = None
        super().reset()

    def _stop_all_workers(self):
        """Stop the workers' buffers, wait until every worker is idle, then close the
        queue they announce batches on (see the module docstring)."""
        for w in self.workers:
            w.buffer.stop()  # a batch under way cannot be sent: its worker goes idle
        with self.gid.get_lock():
            self.gid.get_obj().value = self.batch_len  # no worker takes another batch
            while self.num_idle.value < self.num_workers:
                self.num_idle_c.wait()
        self.idqueue.stop()
        for w in self.workers:
            w.buffer.clear()
        self.idqueue.clear()
        self.gid.value = 0

    def __repr__(self):
        return (f"VE8Dataset(subset={self.subset!r}, n_samples={self.n_samples}, train={self.train}, "
                f"seed={self.seed}, epoch={self.epoch})")
