"""Shared pytest fixtures.

PyTorch (the tests' reference) is imported here, before anything imports Jittor: the port
keeps Jittor from importing PyTorch itself (``core/jittor_setup.py``), and PyTorch loaded
after Jittor's libraries could bind to their symbols.
"""
import subprocess
from pathlib import Path

import pytest
import torch  # noqa: F401  (first; see above)


@pytest.fixture(scope="session")
def ffmpeg_exe():
    """Path of the ffmpeg binary the tools use (imageio-ffmpeg's static build by default)."""
    from tools.media import find_ffmpeg

    return find_ffmpeg()


@pytest.fixture(scope="session")
def make_video(ffmpeg_exe):
    """Factory: ``make_video(path, frames=30, fps=25, size=(128, 96), audio=True)`` writes a
    tiny synthetic H.264 mp4 (moving test pattern; a 440 Hz tone when ``audio``) and returns
    its Path. ``frames`` is exact."""

    def _make(path, frames=30, fps=25, size=(128, 96), audio=True):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        w, h = size
        seconds = frames / fps
        cmd = [ffmpeg_exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
               "-f", "lavfi", "-i", f"testsrc=size={w}x{h}:rate={fps}"]
        if audio:
            cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
        cmd += ["-frames:v", str(frames), "-t", f"{seconds:.4f}", "-c:v", "libx264",
                "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
        cmd += ["-c:a", "aac", "-shortest"] if audio else ["-an"]
        cmd += ["file:" + str(path.resolve())]
        subprocess.run(cmd, check=True)
        return path

    return _make
