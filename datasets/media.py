"""ffmpeg helpers: a video becomes the frames, ``n_frames`` file and mp3 of a prepared dataset.

    from datasets.media import extract_frames, extract_audio, probe
    n = extract_frames("clip.mp4", "/tmp/x/clip")            # /tmp/x/clip/000001.jpg ... + n_frames
    had_sound = extract_audio("clip.mp4", "/tmp/x/clip.mp3")  # silent mp3 when there is no sound

The dataset tools (``tools/``) and ``predict.py`` both use them, so a video is turned into
samples the same way wherever it comes from. The conventions are the release's (see
docs/release.md, "Data on disk"):

- frames: ``ffmpeg -i VIDEO -vf scale=-1:240 DIR/%06d.jpg`` (height 240, aspect kept,
  numbering from 000001), default jpeg quality;
- audio: ``ffmpeg -i VIDEO OUT.mp3`` (ffmpeg's default mp3 encoding of the default audio
  stream); a video without an audio stream gets a silent mp3 of the video's duration;
- ``n_frames``: the largest frame index, or 0 when the folder holds fewer than 16 jpgs.

Every output is written under a temporary hidden sibling name (``.<name>.partial``) and
renamed into place only when ffmpeg succeeded, so an output under its real name is always
complete; a leftover ``.partial`` is an interrupted extraction and is removed and redone.
ffmpeg is always called with an argument list (never a shell string) and with ``file:``
paths, so names with spaces, commas, quotes, colons, ``%`` or a leading ``-`` are safe.

The ffmpeg binary is ``find_ffmpeg()``: an explicit path, else ``$FFMPEG_BINARY``, else the
static binary of ``imageio-ffmpeg``, else ``ffmpeg`` on ``PATH``. imageio-ffmpeg ships no
ffprobe, so ``probe()`` parses the stream list that ``ffmpeg -i`` prints. An ffmpeg that
crashes or is killed is a ``MediaError`` naming the signal, also in a program that has
imported Jittor (``core.child_processes``). Nothing here imports Jittor.
"""
import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import ffmpeg as ffmpeg_python  # ffmpeg-python: builds the argument lists

from core.atomic_file import write_atomically
from core.child_processes import exit_description, run_child

__all__ = [
    "VIDEO_EXTS", "FRAME_HEIGHT", "MIN_FRAMES", "MediaError", "MediaInfo",
    "find_ffmpeg", "run_ffmpeg", "ffmpeg_args", "file_url", "ffmpeg_to_file", "probe",
    "count_frames", "extract_frames", "extract_audio", "make_silent_mp3", "frame_file",
    "list_frame_indices", "frames_complete", "count_n_frames", "read_n_frames",
    "stored_n_frames", "write_n_frames", "partial_path", "remove_partials", "find_videos",
]

#: Extensions (lower case) recognised as videos in a raw dataset folder.
VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".flv", ".wmv", ".mpg",
              ".mpeg", ".3gp", ".ogv", ".ts")
FRAME_HEIGHT = 240
MIN_FRAMES = 16
N_FRAMES_FILE = "n_frames"
_FRAME_NAME = "{:06d}.jpg"           # 1 -> 000001.jpg, what ffmpeg's %06d.jpg writes
_FRAME_RE = re.compile(r"^(\d{6})\.jpg$")
_PARTIAL_SUFFIXES = (".partial", ".stale")


class MediaError(RuntimeError):
    """ffmpeg failed on a file, or the file holds no usable stream."""


# --------------------------------------------------------------------------- ffmpeg
def add_ffmpeg_option(parser):
    """The scripts' ``--ffmpeg PATH`` option (for ``find_ffmpeg``)."""
    parser.add_argument("--ffmpeg", default=None, metavar="PATH",
                        help="ffmpeg binary (default: $FFMPEG_BINARY, else imageio-ffmpeg's, "
                             "else PATH)")


def find_ffmpeg(path: Optional[str] = None) -> str:
    """The ffmpeg executable: ``path``, else ``$FFMPEG_BINARY``, else imageio-ffmpeg's, else PATH."""
    for cand in (path, os.environ.get("FFMPEG_BINARY")):
        if cand:
            found = shutil.which(cand) or (cand if os.path.isfile(cand) else None)
            if not found:
                raise MediaError(f"ffmpeg binary not found: {cand!r}")
            return found
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # not installed, or no binary for this platform
        pass
    found = shutil.which("ffmpeg")
    if not found:
        raise MediaError("no ffmpeg found: install imageio-ffmpeg, or pass --ffmpeg / set FFMPEG_BINARY")
    return found


def file_url(path) -> str:
    """An absolute ``file:`` url, so that ffmpeg never reads a name as a protocol or option."""
    return "file:" + os.path.abspath(os.fspath(path))


def _tail(text: str, n: int = 6) -> str:
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return " | ".join(lines[-n:])


def run_ffmpeg(args: Sequence[str], ffmpeg: Optional[str] = None, check: bool = True,
               timeout: Optional[float] = None) -> subprocess.CompletedProcess:
    """Run ``ffmpeg ARGS`` (no shell); raise MediaError with ffmpeg's last lines on failure."""
    cmd = [find_ffmpeg(ffmpeg), "-nostdin", "-hide_banner", *map(str, args)]
    try:
        # run_child: an ffmpeg that crashes is this file's failure, also after Jittor
        # was imported (whose SIGCHLD handler would end the whole process)
        proc = run_child(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise MediaError(f"ffmpeg timed out after {timeout}s") from e
    proc.stdout = proc.stdout.decode("utf-8", "replace")
    proc.stderr = proc.stderr.decode("utf-8", "replace")
    if proc.returncode < 0 or (check and proc.returncode != 0):  # killed: never usable
        tail = _tail(proc.stderr)
        raise MediaError(f"ffmpeg {exit_description(proc.returncode)}" + (f": {tail}" if tail else ""))
    return proc


def ffmpeg_args(stream, ffmpeg: Optional[str]) -> List[str]:
    """Argument list of an ffmpeg-python graph (without the binary itself)."""
    return ffmpeg_python.compile(stream, cmd=find_ffmpeg(ffmpeg))[1:]


def ffmpeg_to_file(final, output_to: Callable[[str], object], ffmpeg: Optional[str] = None) -> None:
    """Write one file with ffmpeg so that ``final`` only ever names a complete file.

    ``output_to(url)`` returns the ffmpeg-python output stream that writes to ``url`` (a
    hidden ``.partial`` sibling); the partial file is renamed to ``final`` when ffmpeg
    succeeded and wrote something, and removed otherwise."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(final)
    _remove(partial)
    try:
        stream = output_to(file_url(partial))
        run_ffmpeg(["-loglevel", "error", "-y", *ffmpeg_args(stream, ffmpeg)], ffmpeg=ffmpeg)
        if os.path.getsize(partial) == 0:
            raise MediaError("ffmpeg wrote an empty file")
        os.replace(partial, final)
    except BaseException:
        _remove(partial)
        raise


# --------------------------------------------------------------------------- probing
@dataclass
class MediaInfo:
    """What ``ffmpeg -i`` says about a file."""
    duration: Optional[float]  # seconds, None when the container does not say
    has_video: bool
    has_audio: bool
    width: Optional[int] = None
    height: Optional[int] = None
    fps: Optional[float] = None
    streams: List[str] = field(default_factory=list)


_DURATION_RE = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_STREAM_RE = re.compile(r"^\s*Stream #0:\d+.*?: (Video|Audio|Subtitle|Data|Attachment): (.*)$", re.M)
_TIME_RE = re.compile(r"time=\s*(-?\d+):(\d+):(\d+(?:\.\d+)?)")


def _hms(h, m, s) -> float:
    return int(h) * 3600 + int(m) * 60 + float(s)


def probe(video, ffmpeg: Optional[str] = None) -> MediaInfo:
    """Streams and duration of ``video`` from ``ffmpeg -i`` (raises MediaError if unreadable)."""
    video = Path(video)
    if not video.is_file():
        raise MediaError(f"no such file: {video}")
    proc = run_ffmpeg(["-i", file_url(video)], ffmpeg=ffmpeg, check=False)
    err = proc.stderr
    if "Input #0" not in err:
        raise MediaError(f"unreadable media file: {_tail(err, 2)}")
    streams = _STREAM_RE.findall(err)
    info = MediaInfo(duration=None, has_video=False, has_audio=False,
                     streams=[kind for kind, _ in streams])
    m = _DURATION_RE.search(err)
    if m:
        info.duration = _hms(*m.groups())
    for kind, desc in streams:
        if kind == "Video" and "attached pic" not in desc and not info.has_video:
            info.has_video = True
            size = re.search(r"(?:^|[ ,])(\d{2,5})x(\d{2,5})(?:[ ,\[]|$)", desc)
            if size:
                info.width, info.height = int(size.group(1)), int(size.group(2))
            fps = re.search(r"(\d+(?:\.\d+)?)(k?) fps", desc) or re.search(r"(\d+(?:\.\d+)?)(k?) tbr", desc)
            if fps:
                info.fps = float(fps.group(1)) * (1000 if fps.group(2) else 1)
        elif kind == "Audio":
            info.has_audio = True
    return info


def _decoded_duration(video, ffmpeg: Optional[str], stream: str) -> float:
    proc = run_ffmpeg(["-i", file_url(video), "-map", stream, "-f", "null", "-"], ffmpeg=ffmpeg)
    times = _TIME_RE.findall(proc.stderr)
    if not times:
        raise MediaError(f"cannot measure the duration of {video}")
    return _hms(*times[-1])


def count_frames(video, ffmpeg: Optional[str] = None) -> int:
    """Number of jpgs that ``extract_frames`` makes of ``video`` (decodes it; no encoding).

    Uses the same frame-rate handling as the jpg output (constant rate), so this is the
    exact count for a complete extraction. Costs a full decode: use it to verify.
    """
    proc = run_ffmpeg(["-i", file_url(video), "-map", "0:v:0", "-fps_mode", "cfr",
                       "-f", "null", "-"], ffmpeg=ffmpeg)
    counts = re.findall(r"frame=\s*(\d+)", proc.stderr)
    if not counts:
        raise MediaError(f"no video frames in {video}")
    return int(counts[-1])


# --------------------------------------------------------------------------- partial outputs
def partial_path(final, kind: str = ".partial") -> Path:
    """Hidden sibling used while ``final`` is written: ``DIR/.<name>.partial``."""
    final = Path(final)
    name = f".{final.name}{kind}"
    if len(name.encode()) > 240:  # keep under NAME_MAX for very long ids
        name = f".{hashlib.sha1(final.name.encode()).hexdigest()}{kind}"
    return final.with_name(name)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def remove_partials(directory) -> List[Path]:
    """Delete leftover ``.*.partial`` / ``.*.stale`` entries in ``directory``; return them."""
    directory = Path(directory)
    removed = []
    if directory.is_dir():
        for entry in directory.iterdir():
            if entry.name.startswith(".") and entry.name.endswith(_PARTIAL_SUFFIXES):
                _remove(entry)
                removed.append(entry)
    return removed


# --------------------------------------------------------------------------- frames
def frame_file(directory, index):
    """The jpg of frame ``index`` (from 1) in a frame folder."""
    return os.path.join(directory, _FRAME_NAME.format(index))


def list_frame_indices(directory) -> List[int]:
    """Sorted indices of the ``NNNNNN.jpg`` files in ``directory``."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(int(m.group(1)) for m in map(_FRAME_RE.match, names) if m)


def _n_frames_of(indices, min_frames: int = MIN_FRAMES) -> int:
    return indices[-1] if len(indices) >= min_frames else 0


def count_n_frames(directory, min_frames: int = MIN_FRAMES) -> int:
    """The ``n_frames`` value: largest frame index, 0 when fewer than ``min_frames`` jpgs."""
    return _n_frames_of(list_frame_indices(directory), min_frames)


def read_n_frames(directory) -> int:
    """The frame count in ``directory/n_frames``, read as the release reads it (a number,
    ``"30"`` or ``"30.0"``, truncated to an int). Raises OSError when the file cannot be
    read and ValueError when it holds no number."""
    path = Path(directory, N_FRAMES_FILE)
    text = path.read_text()
    try:
        return int(float(text.strip()))
    except (ValueError, OverflowError):
        raise ValueError(f"{path} holds {text[:40]!r}, not a frame count") from None


def stored_n_frames(directory) -> Optional[int]:
    """``read_n_frames(directory)``, or None when the file is missing or unreadable."""
    try:
        return read_n_frames(directory)
    except (OSError, ValueError):
        return None


def write_n_frames(directory, min_frames: int = MIN_FRAMES) -> int:
    """Write ``directory/n_frames`` (only if its content changes); return the value."""
    value = count_n_frames(directory, min_frames)
    target = Path(directory, N_FRAMES_FILE)
    if stored_n_frames(directory) == value and target.read_text() == str(value):
        return value
    write_atomically(target, lambda f: f.write(str(value).encode("ascii")))
    return value


def _jpeg_complete(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            if f.read(2) != b"\xff\xd8":
                return False
            f.seek(-2, os.SEEK_END)
            return f.read(2) == b"\xff\xd9"
    except OSError:
        return False


def frames_complete(directory, expected: Optional[int] = None) -> bool:
    """Whether ``directory`` looks like a finished extraction.

    True when it holds ``000001.jpg .. N.jpg`` without gaps, N >= 1, every jpg non-empty and
    the last one a complete jpeg, ``n_frames`` (if present) consistent with N, and - when
    ``expected`` is given (e.g. from ``count_frames``) - N == expected.
    """
    directory = Path(directory)
    idx = list_frame_indices(directory)
    if not idx or idx[0] != 1 or idx[-1] != len(idx):
        return False
    if expected is not None and len(idx) != expected:
        return False
    for i in idx:
        try:
            if os.path.getsize(frame_file(directory, i)) == 0:
                return False
        except OSError:
            return False
    if not _jpeg_complete(Path(frame_file(directory, idx[-1]))):
        return False
    if (directory / N_FRAMES_FILE).exists() and stored_n_frames(directory) != _n_frames_of(idx):
        return False
    return True


def _install(partial: Path, final: Path) -> None:
    """Atomically put the finished ``partial`` under the name ``final``.

    An existing ``final`` (an incomplete earlier output, or an empty folder such as a
    ``mkdtemp``) is moved aside first and deleted only once the new output is in place.
    """
    if final.is_dir() and not any(final.iterdir()):
        final.rmdir()
    if final.exists():
        stale = partial_path(final, ".stale")
        _remove(stale)
        os.replace(final, stale)
        os.replace(partial, final)
        _remove(stale)
    else:
        os.replace(partial, final)


def extract_frames(video, out_dir, ffmpeg: Optional[str] = None, height: int = FRAME_HEIGHT,
                   n_frames: bool = True, overwrite: bool = False) -> int:
    """Extract all frames of ``video`` into ``out_dir/000001.jpg ...``; return the jpg count.

    Runs ``ffmpeg -i VIDEO -vf scale=-1:HEIGHT out_dir/%06d.jpg`` into ``.<out_dir>.partial``
    and renames it into place when ffmpeg succeeded. With ``n_frames`` also writes the
    ``n_frames`` file. An ``out_dir`` that already holds a complete extraction is kept as
    it is (its count is returned) unless ``overwrite``; an incomplete one is replaced.
    """
    video, out_dir = Path(video), Path(out_dir)
    if not overwrite and out_dir.is_dir() and frames_complete(out_dir):
        if n_frames:
            write_n_frames(out_dir)
        return len(list_frame_indices(out_dir))
    if not video.is_file():
        raise MediaError(f"no such file: {video}")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(out_dir)
    _remove(partial)
    partial.mkdir()
    try:
        # image2 treats '%' in the path as a pattern: escape it as '%%'.
        pattern = file_url(partial).replace("%", "%%") + "/%06d.jpg"
        stream = ffmpeg_python.input(file_url(video)).output(pattern, vf=f"scale=-1:{height}")
        run_ffmpeg(["-loglevel", "error", "-y", *ffmpeg_args(stream, ffmpeg)], ffmpeg=ffmpeg)
        count = len(list_frame_indices(partial))
        if count == 0:
            raise MediaError("ffmpeg wrote no frames (no video stream?)")
        if n_frames:
            write_n_frames(partial)
        _install(partial, out_dir)
        return count
    except BaseException:
        _remove(partial)
        raise


# --------------------------------------------------------------------------- audio
def make_silent_mp3(mp3_path, duration: float, ffmpeg: Optional[str] = None,
                    sample_rate: int = 44100) -> None:
    """Write a silent mono mp3 of ``duration`` seconds (atomically)."""
    src = ffmpeg_python.input(f"anullsrc=r={sample_rate}:cl=mono", f="lavfi", t=f"{duration:.3f}")
    ffmpeg_to_file(mp3_path, lambda url: src.output(url, f="mp3"), ffmpeg)


def extract_audio(video, mp3_path, ffmpeg: Optional[str] = None, overwrite: bool = False,
                  info: Optional[MediaInfo] = None) -> bool:
    """Write the sound of ``video`` to ``mp3_path``; return whether the video had sound.

    ``ffmpeg -i VIDEO -vn OUT.mp3`` (ffmpeg's default mp3 encoding, default audio stream),
    written as ``.<name>.partial`` then renamed. A video without an audio stream gets a
    silent mp3 of the video's duration and False is returned. An existing ``mp3_path`` is
    kept unless ``overwrite`` (then the return value comes from probing the video).
    """
    video, mp3_path = Path(video), Path(mp3_path)
    info = info or probe(video, ffmpeg)
    if mp3_path.exists() and not overwrite:
        return info.has_audio
    if not info.has_audio:
        duration = info.duration
        if duration is None or duration <= 0:
            if not info.has_video:
                raise MediaError("neither audio nor video stream")
            duration = _decoded_duration(video, ffmpeg, "0:v:0")
        make_silent_mp3(mp3_path, duration, ffmpeg)
        return False
    source = ffmpeg_python.input(file_url(video))
    ffmpeg_to_file(mp3_path, lambda url: source.output(url, vn=None, f="mp3"), ffmpeg)
    return True


# --------------------------------------------------------------------------- raw video folders
def find_videos(class_dir) -> Dict[str, Path]:
    """``{video_id: path}`` of the video files directly in ``class_dir`` (hidden files skipped).

    The id is the file name without its video extension. When one id has several files
    (``x.mp4`` and ``x.avi``) the first extension in ``VIDEO_EXTS`` order wins.
    """
    found: Dict[str, Path] = {}
    rank = {ext: i for i, ext in enumerate(VIDEO_EXTS)}
    try:
        entries = sorted(os.scandir(class_dir), key=lambda e: e.name)
    except FileNotFoundError:
        return found
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_file():
            continue
        stem, ext = os.path.splitext(entry.name)
        ext = ext.lower()
        if ext not in rank or not stem:
            continue
        old = found.get(stem)
        if old is None or rank[ext] < rank[old.suffix.lower()]:
            found[stem] = Path(entry.path)
    return found
