"""Writing a file so that its name never shows a half-written file, and saying in words
why a write failed.

``write_atomically(path, write)`` calls ``write(f)`` on a temporary file in the same folder,
then renames it over ``path`` (``atomic_path`` does the same for a file that another
program writes, a compiler say): ``path`` holds either the old or the new complete file, and
on any error the temporary file is removed (``link_atomically`` gives a complete file a
second name the same way). ``durable=True`` also fsyncs the file and the
folder, so the new file survives a power cut (checkpoints). The file gets the permissions a
plainly created one would (``mkstemp`` alone makes 0600 files). ``write_text_if_changed``
leaves a file that already holds the text alone (its time stamp too).

Every write of the project goes through ``write_atomically``, so a failed write (a full
disk, a quota, a read-only filesystem, a folder it may not write to) is always a
``WriteError``: an ``OSError`` that names the file and the cause in words, with the free
space where it matters. ``core.entry`` turns it into a few lines and exit status 1.
"""
import contextlib
import errno
import os
import tempfile


def _file_mode():
    umask = os.umask(0o22)
    os.umask(umask)
    return 0o666 & ~umask


_NEW_FILE_MODE = _file_mode()


def human_size(n):
    """``1536`` -> ``'1.5 KB'`` (powers of 1024)."""
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024


def free_space(folder):
    """Bytes an unprivileged user may still write in ``folder``'s filesystem (None when
    it cannot be asked)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def write_problem(error, folder):
    """The cause of a failed write (an ``OSError``) in ``folder``, in words."""
    code = getattr(error, "errno", None)
    free = free_space(folder)
    where = f" ({human_size(free)} free there)" if free is not None else ""
    if code == errno.ENOSPC:
        return f"the disk is full{where}"
    if code == errno.EDQUOT:
        return f"the disk quota is used up{where}"
    if code == errno.EROFS:
        return "the filesystem is read-only"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied: this user may not write in that folder"
    return error.strerror or str(error)


class WriteError(OSError):
    """``path`` could not be written; ``cause`` says why in words, ``errno`` is the
    system's."""

    def __init__(self, path, error):
        self.path = os.fspath(path)
        self.cause = write_problem(error, os.path.dirname(os.path.abspath(self.path)) or ".")
        super().__init__(getattr(error, "errno", None), self.cause, self.path)

    def __str__(self):
        return f"cannot write {self.path}: {self.cause}"

    @property
    def remedy(self):
        """What to do about it, in words (a sentence to go on with ", then ...")."""
        if self.errno in (errno.ENOSPC, errno.EDQUOT):
            return "Free some space there"
        if self.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return "Make that folder writable (or choose another one)"
        return "Fix this"


@contextlib.contextmanager
def atomic_path(path, durable=False):
    """``with atomic_path(path) as tmp:`` make the new file under the name ``tmp`` (an empty
    file of its own in ``path``'s folder, mode 0600); when the block ends it is renamed
    over ``path``, or removed if the block raised. ``durable``: the file and the rename
    are synced to disk. An ``OSError`` on the way is raised as a ``WriteError``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                                   dir=folder)
        os.close(fd)
        yield tmp
        if durable:
            _fsync(tmp, os.O_RDONLY)
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            raise WriteError(path, e) from e
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


#: What ``os.link`` fails with where a filesystem keeps no hard links.
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK}


def link_atomically(src, path, durable=False):
    """Make ``path`` a second name of the complete file ``src`` (a hard link, replacing
    ``path`` atomically): one file on disk, written once. ``src`` must not be changed in
    place afterwards (``write_atomically`` never does: it makes a new file). False, with
    ``path`` left as it was, where the filesystem has no hard links."""
    try:
        with atomic_path(path, durable) as tmp:
            os.unlink(tmp)  # the name is this process's: mkstemp made it
            os.link(src, tmp)
    except WriteError as e:
        if e.errno in _NO_HARD_LINKS:
            return False
        raise
    return True


def write_text_if_changed(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically, unless the file already holds it."""
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return
    write_atomically(path, lambda f: f.write(text.encode("utf-8")))


def make_folder(folder):
    """``os.makedirs(folder, exist_ok=True)``, failing with a ``WriteError``."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise WriteError(folder, e) from e
    return folder
