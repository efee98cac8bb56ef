"""The videos that a command line names: video files, folders of them and lists of paths.

    from datasets.inputs import Inputs
    found = Inputs(["clips/", "more.mp4", "list.txt"])
    found.videos     # absolute paths, in order, without repeats
    found.broken     # {path: why} for listed paths that cannot be videos
    found.skipped    # files in the folders that are not videos (by extension)

Folders are searched recursively for files with a video extension (``datasets.media.
VIDEO_EXTS``; hidden files and folders are left out); text files (``LIST_EXTS``) list one
path per line, relative to the list's folder (blank lines and lines starting with ``#``
are skipped). A named input that does not exist, an unreadable list or no video at all is
a ``core.entry.UsageError``; a listed path that does not exist is that video's failure.
"""
import os

from core.entry import UsageError
from datasets.media import VIDEO_EXTS

LIST_EXTS = (".txt", ".lst", ".list")


class Inputs:
    """The videos that the command-line inputs name, in order and without repeats.

    ``videos``: absolute paths; ``broken``: ``{path: why}`` for paths a list names that
    cannot be a video (they become failed rows); ``skipped``: files in searched folders
    that are not videos (by extension)."""

    def __init__(self, inputs):
        self.videos, self.broken, self.skipped = [], {}, []
        self._seen = set()
        for item in inputs:
            if not os.path.exists(item):
                raise UsageError(f"no such file or folder: {item}")
            self._add(item, None)
        if not self.videos:
            where = ", ".join(inputs)
            skipped = f" ({len(self.skipped)} other files skipped)" if self.skipped else ""
            raise UsageError(f"no video files in {where}{skipped}")

    def _video(self, path, why=None):
        path = os.path.abspath(path)
        if path in self._seen:
            return
        self._seen.add(path)
        self.videos.append(path)
        if why:
            self.broken[path] = why

    def _add(self, path, listed_in):
        if os.path.isdir(path):
            self._folder(path)
        elif not os.path.exists(path):
            self._video(path, f"no such file (listed in {listed_in})")
        elif path.lower().endswith(LIST_EXTS) and listed_in is None:
            self._list(path)
        else:
            self._video(path)

    def _folder(self, folder):
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith("."):
                    continue
                path = os.path.join(root, name)
                if name.lower().endswith(VIDEO_EXTS):
                    self._video(path)
                else:
                    self.skipped.append(path)

    def _list(self, list_file):
        base = os.path.dirname(os.path.abspath(list_file))
        try:
            with open(list_file, encoding="utf-8-sig") as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read the list {list_file}: {e}")
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                self._add(os.path.join(base, os.path.expanduser(line)), list_file)
