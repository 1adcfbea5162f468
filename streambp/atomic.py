"""Atomic file replacement: what the user already has is never left half-written."""
import contextlib
import os
import tempfile

from .errors import StreambpError


def check_writable(path):
    """Raise a StreambpError now, before any work, if `path` cannot be written as a file."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise StreambpError(f"Cannot write {path}: it is a directory.")
    if not os.path.isdir(directory):
        raise StreambpError(f"Cannot write {path}: directory {directory} does not exist.")
    if not os.access(directory, os.W_OK):
        raise StreambpError(f"Cannot write {path}: no permission to write in {directory}.")


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success fsync it and rename it over `path`.

    On any error the temporary file is removed and `path` is left as it was.
    """
    path = os.fspath(path)
    check_writable(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=directory)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
