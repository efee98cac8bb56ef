"""Writing a file so that its name never shows a half-written file.

``write_atomically(path, write)`` calls ``write(f)`` on a temporary file in the same folder,
then renames it over ``path`` (``atomic_path`` does the same for a file that another
program writes, a compiler say): ``path`` holds either the old or the new complete file, and
on any error the temporary file is removed. ``durable=True`` also fsyncs the file and the
folder, so the new file survives a power cut (checkpoints). The file gets the permissions a
plainly created one would (``mkstemp`` alone makes 0600 files). ``write_text_if_changed``
leaves a file that already holds the text alone (its time stamp too).
"""
import contextlib
import os
import tempfile


def _file_mode():
    umask = os.umask(0o22)
    os.umask(umask)
    return 0o666 & ~umask


_NEW_FILE_MODE = _file_mode()


@contextlib.contextmanager
def atomic_path(path, durable=False):
    """``with atomic_path(path) as tmp:`` make the new file under the name ``tmp`` (an empty
    file of its own in ``path``'s folder, mode 0600); when the block ends it is renamed
    over ``path``, or removed if the block raised. ``durable``: the file and the rename
    are synced to disk."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=folder)
    os.close(fd)
    try:
        yield tmp
        if durable:
            _fsync(tmp, os.O_RDONLY)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        try:  # make the rename itself durable
            _fsync(folder, os.O_RDONLY)
        except OSError:
            pass


def _fsync(path, flags):
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path, write, durable=False, mode=None):
    """``write(f)`` into a new file (binary) that replaces ``path`` once complete; ``mode``:
    its permissions (default: those of a plainly created file)."""
    with atomic_path(path, durable) as tmp:
        with open(tmp, "wb") as f:
            os.fchmod(f.fileno(), _NEW_FILE_MODE if mode is None else mode)
            write(f)
    return os.fspath(path)


def write_text_if_changed(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically, unless the file already holds it."""
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return
    write_atomically(path, lambda f: f.write(text.encode("utf-8")))
