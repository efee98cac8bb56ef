"""A file of a prepared dataset that cannot be read, and the loader's error for its sample.

    @names_the_file(frame_cause)
    def load_frame(path): ...             # any failure -> UnreadableFile(path, cause in words)

    SampleError.of(exc, video_id, label, subset, video_dir)   # the video, the file, the cause

- ``UnreadableFile(path, cause)``: one frame or sound file that cannot be read; ``cause``
  says why in words (missing, empty, not a JPEG, a truncated JPEG, not decodable as audio,
  ...), since the decoders' own errors often name neither the file nor the problem (a
  truncated mp3 ends in audioread's ``NoBackendError`` with no message at all).
- ``SampleError``: the loader could not make the sample of one video: which video (id,
  class, subset), which file, why, and the traceback of where it happened (``detail``, for
  ``--debug``). It travels from a loader worker to the main process inside the batch
  (``datasets.ve8``) and pickles with its fields.
- ``frame_cause`` / ``audio_cause``: the words for an exception met reading a frame or a
  sound file.
"""
import functools
import os
import traceback

from PIL import UnidentifiedImageError

from datasets.media import list_frame_indices, stored_n_frames

__all__ = ["UnreadableFile", "SampleError", "check_hint", "names_the_file", "frame_cause",
           "audio_cause", "os_cause"]


class UnreadableFile(Exception):
    """``path`` cannot be read; ``cause`` says why, in words."""

    def __init__(self, path, cause):
        super().__init__(path, cause)
        self.path, self.cause = os.fspath(path), cause

    def __str__(self):
        return f"{self.path}: {self.cause}"


class SampleError(RuntimeError):
    """The sample of one video could not be made (see the module docstring)."""

    def __init__(self, video_id, label, subset, path, cause, detail=""):
        super().__init__(video_id, label, subset, path, cause, detail)
        self.video_id, self.label, self.subset = video_id, label, subset
        self.path, self.cause, self.detail = path, cause, detail

    @classmethod
    def of(cls, exc, video_id, label, subset, video_dir, where=""):
        """The SampleError for ``exc``, met while loading the video; call it in the
        ``except`` block (it keeps ``where`` and the traceback as ``detail``)."""
        if isinstance(exc, UnreadableFile):
            path, cause = exc.path, exc.cause
        elif isinstance(exc, OSError) and exc.filename:
            path, cause = os.fspath(exc.filename), os_cause(exc)
        else:
            path, cause = video_dir, f"{type(exc).__name__}: {exc}"
        return cls(video_id, label, subset, path, cause, where + traceback.format_exc())

    def lines(self):
        """The error in a few lines: the video, the file, the cause."""
        return [f"  video  {self.video_id} (class {self.label}, {self.subset} subset)",
                f"  file   {self.path}",
                f"  cause  {self.cause}"]

    def __str__(self):
        return f"video {self.video_id} ({self.label}): {self.path}: {self.cause}"


def check_hint(root_path, dataset):
    """The line that ends a SampleError's report: how to list every damaged file."""
    return (f"`python tools/prepare_dataset.py --check --dst {root_path} --dataset {dataset}` "
            f"lists every damaged file and how to re-extract it; --debug shows the traceback.")


def names_the_file(cause):
    """Decorator of a reader ``f(path, ...)``: any exception it raises becomes
    ``UnreadableFile(path, cause(path, exc))``."""
    def decorate(read):
        @functools.wraps(read)
        def reader(path, *args, **kwargs):
            try:
                return read(path, *args, **kwargs)
            except UnreadableFile:
                raise
            except Exception as e:  # noqa: BLE001  (every decoder error is this file's)
                raise UnreadableFile(path, cause(path, e)) from e
        return reader
    return decorate


# --------------------------------------------------------------------------- causes in words
def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def _head(path, n=12):
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def os_cause(exc):
    """An OSError met opening a file, in words."""
    if isinstance(exc, FileNotFoundError):
        return "missing"
    if isinstance(exc, PermissionError):
        return "not readable (permission denied)"
    if isinstance(exc, IsADirectoryError):
        return "a folder, not a file"
    return f"cannot be read ({exc.strerror or exc})"


def _common_cause(path, exc):
    """The words for what is wrong whatever the file's kind, or None."""
    if not os.path.exists(path):
        return "missing"
    if os.path.isdir(path):
        return "a folder, not a file"
    if isinstance(exc, PermissionError):
        return os_cause(exc)
    if _size(path) == 0:
        return "empty (0 bytes)"
    return None


def _missing_frame(path):
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        return f"missing, and so is its frame folder {folder}"
    found = list_frame_indices(folder)
    n_frames = stored_n_frames(folder)
    said = f"n_frames says {n_frames}" if n_frames is not None else "no readable n_frames file"
    if not found:
        return f"missing: the folder holds no frames ({said})"
    return (f"missing: the folder holds {len(found)} frames, {found[0]:06d}.jpg to "
            f"{found[-1]:06d}.jpg ({said})")


def frame_cause(path, exc):
    """Why the jpg ``path`` cannot be read, given the exception met reading it."""
    if isinstance(exc, FileNotFoundError) or not os.path.exists(path):
        return _missing_frame(path)
    common = _common_cause(path, exc)
    if common:
        return common
    head = _head(path)
    if isinstance(exc, UnidentifiedImageError):
        if head.startswith(b"\xff\xd8"):
            return "a damaged JPEG: its header is unreadable"
        return f"not a JPEG image: it starts with {head!r} (overwritten or corrupt)"
    message = str(exc)
    if "truncated" in message.lower():  # PIL: "image file is truncated", "Truncated File Read"
        return f"a truncated JPEG: the file stops early ({_size(path)} bytes)"
    return f"a damaged JPEG ({type(exc).__name__}: {message})"


_AUDIO_MAGIC = (b"ID3", b"RIFF", b"OggS", b"fLaC")


def audio_cause(path, exc):
    """Why the sound file ``path`` cannot be decoded, given the exception met decoding it.

    librosa reads with libsndfile and, when that fails, with audioread, whose
    ``NoBackendError`` (no decoder took the file) names neither the file nor the reason."""
    common = _common_cause(path, exc)
    if common:
        return common
    head = _head(path)
    looks_like_mpeg = len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0
    if not (looks_like_mpeg or head.startswith(_AUDIO_MAGIC)):
        return f"not a sound file: it starts with {head!r} (overwritten or corrupt)"
    name = type(exc).__name__
    if name == "NoBackendError" or "sndfile" in type(exc).__module__ + name.lower():
        return (f"not decodable ({_size(path)} bytes): libsndfile rejects it and audioread has "
                f"no decoder that reads it, so it is truncated or corrupt")
    return f"not decodable ({name}: {exc})"
