"""Writing a file so that its name never shows a half-written file.

``write_atomically(path, write)`` calls ``write(f)`` on a temporary file in the same folder,
then renames it over ``path``: ``path`` holds either the old or the new complete file, and
on any error the temporary file is removed. ``durable=True`` also fsyncs the file and the
folder, so the new file survives a power cut (checkpoints). The file gets the permissions a
plainly created one would (``mkstemp`` alone makes 0600 files). ``write_text_if_changed``
leaves a file that already holds the text alone (its time stamp too).
"""
import os
import tempfile


def _file_mode():
    umask = os.umask(0o22)
    os.umask(umask)
    return 0o666 & ~umask


_NEW_FILE_MODE = _file_mode()


def write_atomically(path, write, durable=False):
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), _NEW_FILE_MODE)
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        try:  # make the rename itself durable
            dfd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
    return path


def write_text_if_changed(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically, unless the file already holds it."""
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return
    write_atomically(path, lambda f: f.write(text.encode("utf-8")))
