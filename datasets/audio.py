"""Audio features of VAANet (docs/release.md, "One sample") and their on-disk cache.

``mfcc_features(path)`` computes, exactly as the release:
``librosa.load(path, sr=44100)`` (mono), ``librosa.feature.mfcc(y=y, sr=sr, n_mfcc=32)``
with librosa's other defaults, transposed to ``[frames, 32]``, tiled ``4096 // frames + 1``
times along time and cut to the first 4096 rows: float32 ``[4096, 32]``. A file that
cannot be decoded raises ``datasets.errors.UnreadableFile`` with the cause in words.

``MFCCCache(folder)`` stores one ``.npy`` per audio file. Its key hashes the file's
absolute path, size and modification time (ns) together with the feature parameters and
a format version, so an edited or replaced mp3 gets a new entry. Entries are written
atomically (``core.atomic_file``); an entry that
cannot be read, or has the wrong shape or dtype, is recomputed and rewritten. A cache hit
returns the very values that were computed (``np.save``/``np.load`` are lossless).
"""
import hashlib
import os
import warnings

import numpy as np

from core.atomic_file import write_atomically
from core.child_processes import children_may_die
from datasets.errors import UnreadableFile, audio_cause, names_the_file

SAMPLE_RATE = 44100
N_MFCC = 32
HOP_LENGTH = 512  # librosa's default: samples between two MFCC rows
#: The time, in seconds of sound, between two MFCC rows of the model's audio input.
FRAME_SECONDS = HOP_LENGTH / SAMPLE_RATE
TIMESERIES_LENGTH = 4096
CACHE_VERSION = 1


def segment_seconds(n_segments):
    """Seconds of sound in each of the model's ``n_segments`` audio segments."""
    return TIMESERIES_LENGTH // n_segments * FRAME_SECONDS


def tile_features(feature, length=TIMESERIES_LENGTH):
    """Tile ``[frames, C]`` along time ``length // frames + 1`` times; keep ``length`` rows."""
    frames = feature.shape[0]
    if frames == 0:
        raise ValueError("audio has no MFCC frames")
    reps = length // frames + 1
    return np.tile(feature, (reps, 1))[:length]


@names_the_file(audio_cause)
def _librosa_load(path, sr):
    import librosa  # imported lazily: it is slow to import and only workers need it

    with children_may_die(), warnings.catch_warnings():
        # librosa's fallback from libsndfile to audioread warns twice (once with a source
        # line that reads like a traceback); a failure is explained by audio_cause instead
        warnings.filterwarnings("ignore", message="PySoundFile failed")
        warnings.filterwarnings("ignore", category=FutureWarning, module="librosa")
        return librosa.load(path, sr=sr)


def load_audio(path, sr=SAMPLE_RATE):
    """``librosa.load(path, sr=sr)`` (mono): ``(samples, sample rate)``. A file that cannot
    be decoded, or holds no samples, raises ``UnreadableFile`` naming it and the cause.
    audioread, librosa's second decoder, may run ffmpeg: a crash of it is this file's
    failure (``core.child_processes``)."""
    y, sr = _librosa_load(path, sr)
    if y.size == 0:
        raise UnreadableFile(path, "holds no audio samples")
    return y, sr


def mfcc_features(path, sr=SAMPLE_RATE, n_mfcc=N_MFCC, length=TIMESERIES_LENGTH):
    """float32 ``[length, n_mfcc]`` MFCC features of one audio file (no cache)."""
    y, sr = load_audio(path, sr)
    return samples_mfcc(y, sr, n_mfcc, length)


def samples_mfcc(y, sr=SAMPLE_RATE, n_mfcc=N_MFCC, length=TIMESERIES_LENGTH):
    """:func:`mfcc_features` of the samples ``y`` at rate ``sr``."""
    import librosa

    feature = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=n_mfcc, hop_length=HOP_LENGTH).T
    return np.ascontiguousarray(tile_features(feature, length), dtype=np.float32)


def compile_librosa():
    """Have numba compile (and cache in the environment) what librosa runs for the MFCC
    features: ~20 s on the first MFCC of a new environment, which ``make venv`` pays
    instead of the first dataset preparation."""
    samples_mfcc(np.zeros(SAMPLE_RATE, np.float32))


class MFCCCache:
    """Disk cache of :func:`mfcc_features`; ``folder=None`` disables caching."""

    def __init__(self, folder, sr=SAMPLE_RATE, n_mfcc=N_MFCC, length=TIMESERIES_LENGTH):
        self.folder = folder
        self.sr, self.n_mfcc, self.length = sr, n_mfcc, length
        self.hits = 0
        self.misses = 0

    def key(self, path):
        st = os.stat(path)
        text = "\0".join(map(str, (os.path.abspath(path), st.st_size, st.st_mtime_ns,
                                   self.sr, self.n_mfcc, self.length, CACHE_VERSION)))
        return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()

    def entry_path(self, path):
        return os.path.join(self.folder, self.key(path) + ".npy")

    def _read(self, entry):
        try:
            arr = np.load(entry, allow_pickle=False)
        except FileNotFoundError:
            return None
        except Exception as e:  # truncated or garbage file
            warnings.warn(f"corrupt MFCC cache entry {entry} ({e}); recomputing")
            return None
        if arr.shape != (self.length, self.n_mfcc) or arr.dtype != np.float32:
            warnings.warn(f"MFCC cache entry {entry} has shape {arr.shape} {arr.dtype}; recomputing")
            return None
        return arr

    def _write(self, entry, arr):
        os.makedirs(self.folder, exist_ok=True)
        write_atomically(entry, lambda f: np.save(f, arr, allow_pickle=False))

    def __call__(self, path):
        if self.folder is None:
            self.misses += 1
            return mfcc_features(path, self.sr, self.n_mfcc, self.length)
        entry = self.entry_path(path)
        arr = self._read(entry)
        if arr is not None:
            self.hits += 1
            return arr
        self.misses += 1
        arr = mfcc_features(path, self.sr, self.n_mfcc, self.length)
        try:
            self._write(entry, arr)
        except OSError as e:  # a read-only cache folder must not stop training
            warnings.warn(f"cannot write MFCC cache entry {entry}: {e}")
        return arr
