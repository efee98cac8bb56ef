"""One video file in, the model's evaluation sample out: what ``predict.py`` feeds the model.

    from datasets.video import prepare_sample, VideoError
    s = prepare_sample("clip.mp4", config)   # config: model.model_config(...) (a dict)
    s["visual"], s["audio"], s["snippets"]   # as datasets.sample.SampleRecipe gives them
    s["n_frames"], s["has_sound"], s["info"] # what was extracted (a media.MediaInfo)

The video's frames and sound are extracted with ffmpeg (``datasets.media``, the same
commands as the dataset preparation) into a temporary folder that is removed before
returning, and the sample is the evaluation set's (``datasets.sample``, the same code):
frame indices ``range(1, n_frames + 1, 30 // fps)`` over the frames actually extracted
(also for a video shorter than 16 frames, which the dataset tools would leave out),
centre TSN snippets (loop-padded when the video is too short), the ``val`` spatial
transform, and the MFCC features of the extracted mp3 (a video without sound gets a
silent mp3, as in the dataset tools).

Nothing here imports Jittor: ``Samples(videos, config, workers=2)`` (predict.py) runs
``prepare_sample`` in worker processes while the model works on the previous video, and
an ffmpeg that dies there is that video's failure, not the end of the run::

    for video, sample, why in Samples(videos, config):   # sample None: why is the error
        ...
"""
import os
import tempfile

from datasets.errors import UnreadableFile
from datasets.media import (MediaError, extract_audio, extract_frames,
                            list_frame_indices, probe)
from datasets.sample import SampleRecipe, frame_indices


class VideoError(RuntimeError):
    """The video cannot be turned into a sample; the message says why."""


def key_frame(snippet):
    """The frame that stands for a snippet: its middle one."""
    return int(snippet[len(snippet) // 2])


def extract(video, workdir, ffmpeg=None):
    """Frames and mp3 of ``video`` under ``workdir``; returns a dict describing them."""
    try:
        info = probe(video, ffmpeg)
        if not info.has_video:
            raise VideoError(f"no video stream in {video}")
        frames_dir = os.path.join(workdir, "frames")
        extract_frames(video, frames_dir, ffmpeg=ffmpeg)
        mp3 = os.path.join(workdir, "audio.mp3")
        had_sound = extract_audio(video, mp3, ffmpeg=ffmpeg, info=info)
    except MediaError as e:
        raise VideoError(f"cannot read {video}: {e}") from None
    # the real frame count: n_frames would be 0 below 16 frames, the video is still usable
    found = list_frame_indices(frames_dir)
    if not found:
        raise VideoError(f"ffmpeg extracted no frames from {video}")
    return {"frames_dir": frames_dir, "n_frames": found[-1], "mp3": mp3,
            "has_sound": bool(had_sound), "info": info}


def sample_of(extracted, config):
    """``(visual, audio, snippets)``: the evaluation sample of an extracted video."""
    recipe = SampleRecipe(config["seq_len"], config["snippet_duration"], config["sample_size"],
                          train=False)
    indices = frame_indices(extracted["n_frames"], config["fps"])
    try:
        visual, snippets = recipe.visual(extracted["frames_dir"], indices)
        audio = recipe.audio_features(extracted["mp3"])
    except UnreadableFile as e:
        what = "sound track" if e.path == extracted["mp3"] else f"frame {os.path.basename(e.path)}"
        raise VideoError(f"the {what} ffmpeg extracted from the video is unusable: {e.cause}") from None
    return visual, audio, snippets


def prepare_sample(video, config, ffmpeg=None):
    """The sample of ``video`` under the model configuration ``config`` (a dict with
    ``fps``, ``seq_len``, ``snippet_duration``, ``sample_size``), as a dict: ``visual``,
    ``audio``, ``snippets``, ``n_frames``, ``has_sound``, ``info``. Raises VideoError."""
    with tempfile.TemporaryDirectory(prefix="vaanet-video-") as work:
        ex = extract(video, work, ffmpeg)
        visual, audio, snippets = sample_of(ex, config)
        return {"visual": visual, "audio": audio, "snippets": snippets,
                "n_frames": int(ex["n_frames"]), "has_sound": ex["has_sound"], "info": ex["info"]}


def prepare(video, config, ffmpeg):
    """``(sample dict, None)`` or ``(None, why)``: never raises, so that one video's failure
    (in a worker process too) is that video's alone."""
    try:
        return prepare_sample(video, config, ffmpeg), None
    except Exception as e:  # noqa: BLE001 - any failure is this video's, reported in its row
        return None, " ".join(str(e).split()) or type(e).__name__


def _ignore_interrupts():
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides what Ctrl-C does


class Samples:
    """The samples of ``videos``, in order, as ``(video, sample, why)`` (``prepare``).

    With ``workers`` > 0 (and more than one video) they are made in that many fresh
    processes (spawned: they never hold Jittor, and an ffmpeg that dies there is one
    video's failure), which start on creation and keep up to ``workers + 1`` videos
    ahead of the one being used, so that extraction overlaps the model's work."""

    def __init__(self, videos, config, ffmpeg=None, workers=2):
        from collections import deque
        self.job = (config, ffmpeg)
        self.workers = workers if len(videos) > 1 else 0
        self.upcoming, self.pending, self.pool = iter(videos), deque(), None
        if self.workers:
            self._new_pool()
            self._fill()

    def _new_pool(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        self.pool = ProcessPoolExecutor(max_workers=self.workers, initializer=_ignore_interrupts,
                                        mp_context=multiprocessing.get_context("spawn"))

    def _fill(self):
        while len(self.pending) < self.workers + 1:
            v = next(self.upcoming, None)
            if v is None:
                return
            self.pending.append((v, self.pool.submit(prepare, v, *self.job)))

    def __iter__(self):
        from concurrent.futures.process import BrokenProcessPool
        if not self.workers:
            for v in self.upcoming:
                yield (v,) + prepare(v, *self.job)
            return
        while self.pending:
            v, fut = self.pending.popleft()
            self._fill()
            try:
                sample, why = fut.result()
            except BrokenProcessPool:
                # a worker died (killed by a signal): this video fails, the others go on
                sample, why = None, "the process preparing it died (killed; out of memory?)"
                waiting = [pv for pv, _ in self.pending]
                self.close()
                self._new_pool()
                self.pending.clear()
                self.pending.extend((pv, self.pool.submit(prepare, pv, *self.job)) for pv in waiting)
            yield v, sample, why

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
