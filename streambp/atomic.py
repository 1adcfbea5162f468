"""The one guard every written file goes through: atomic, with the umask's permissions, never an input.

A command opens a scope, declares what it reads, and writes through atomic_path():

    with scope() as guard:
        guard.protect(source.files, "the training data")
        with atomic_path(out, "--out") as tmp:   # refused if `out` is any protected file, by any name
            write(tmp)

The scope lives in a context variable, so it covers exactly one command (or one fit() called from Python)
and leaks nothing into the next; outside any scope atomic_path() still writes atomically. A thread does not
see its starter's scope: take current() in the main thread and pass it (as BadRows does).

Temporary files are named .tmp-<pid>-<random>-<name> beside their target; those of a dead process (SIGKILL)
are removed by the next write into that directory.
"""
import contextlib
import contextvars
import errno
import fcntl
import os
import re
import shutil
import stat
import tempfile

from .errors import StreambpError

_scope = contextvars.ContextVar("streambp_output_guard", default=None)
TEMPORARY = re.compile(r"\.tmp-(\d+)-")
# errors of writing, not of the data: reported as one paragraph, the existing file left as it was
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM}
WRITE_TEXTS = ("No space left", "File too large", "Read-only file system", "Disk quota exceeded")


def same_file(a, b):
    """Whether paths a and b name one file: the same real path (relative, ./x, symlinks) or the same inode
    (hard links)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def default_fix(role):
    return f"Choose another {role}." if role.startswith("--") else f"Choose another path for {role}."


class Guard:
    """The inputs and outputs of one command (role, path), and what it holds until it ends (run-directory
    locks)."""

    def __init__(self):
        self.inputs = []
        self.outputs = {}  # role: its first path (a role that writes many files, checkpoints, keeps one)
        self.stack = contextlib.ExitStack()

    def protect(self, paths, role):
        """Declare `paths` (one path or several; None is skipped) inputs of this command, called `role` in
        messages, e.g. "the training data"."""
        for p in [paths] if paths is None or isinstance(paths, (str, os.PathLike)) else paths:
            if p is not None:
                self.inputs.append((role, os.fspath(p)))

    def check(self, path, role, fix=None):
        """Raise a StreambpError now if `path` cannot be written as `role` (e.g. "--out"): it is an input of
        this command, another of its outputs, a directory, or in a directory that does not exist."""
        path = os.fspath(path)
        fix = fix or default_fix(role)
        for input_role, p in self.inputs:
            if same_file(path, p):
                named = "" if os.path.abspath(p) == os.path.abspath(path) else f" ({p})"
                raise StreambpError(f"{role} {path} is {input_role}{named} of this command; writing it would "
                                    f"destroy it. {fix}")
        for output_role, p in self.outputs.items():
            if output_role != role and same_file(path, p):
                raise StreambpError(f"{role} {path} is also {output_role} of this command; one would overwrite "
                                    f"the other. {fix}")
        self.outputs.setdefault(role, path)
        directory = os.path.dirname(os.path.realpath(path))
        if os.path.isdir(path):
            raise StreambpError(f"Cannot write {role} {path}: it is a directory. {fix}")
        if not os.path.isdir(directory):
            raise StreambpError(f"Cannot write {role} {path}: directory {directory} does not exist. {fix}")
        if not os.access(directory, os.W_OK):
            raise StreambpError(f"Cannot write {role} {path}: no permission to write in {directory}. {fix}")

    def check_tree(self, path, role, fix=None):
        """Raise a StreambpError if an input of this command lies in directory `path`, which `role` (e.g. "the
        cache") is about to replace or delete."""
        real = os.path.realpath(path)
        for input_role, p in self.inputs:
            if os.path.commonpath([real, os.path.realpath(p)]) == real:
                raise StreambpError(f"{role} {path} holds {input_role} ({p}) of this command; replacing it would "
                                    f"destroy it. {fix or default_fix(role)}")

    def hold(self, context):
        """Enter `context` (e.g. a lock) until this command ends; return what it yields."""
        return self.stack.enter_context(context)


@contextlib.contextmanager
def scope():
    """The guard of the command being run: a new one, or the enclosing one when a command calls fit()."""
    guard = _scope.get()
    if guard is not None:
        yield guard
        return
    guard = Guard()
    token = _scope.set(guard)
    try:
        with guard.stack:
            yield guard
    finally:
        _scope.reset(token)


def current():
    """The enclosing command's guard; outside any command an empty one (writes are only made atomic)."""
    return _scope.get() or Guard()


def check_writable(path, role="the output", fix=None):
    """current().check(): refuse `path` as `role` before any work is done."""
    current().check(path, role, fix)


def umask():
    with contextlib.suppress(OSError, ValueError, StopIteration), open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)  # elsewhere: read it by setting it (not thread-safe, hence the /proc route first)
    os.umask(mask)
    return mask


def alive(pid):
    """Whether process `pid` exists (as far as this user can tell)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        pass  # alive under another user / not a pid
    return True


def remove_stale_temporaries(directory):
    """Delete the .tmp-<pid>-* files and directories in `directory` whose process no longer exists (killed
    while writing)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        m = TEMPORARY.match(name)
        if not m or int(m.group(1)) == os.getpid() or alive(int(m.group(1))):
            continue
        path = os.path.join(directory, name)
        with contextlib.suppress(OSError):
            shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)


def write_failed(error):
    return isinstance(error, OSError) and (error.errno in WRITE_ERRNOS or
                                           any(t in str(error) for t in WRITE_TEXTS))


def cannot_write(path, role, error, fix):
    reason = error.strerror or str(error)
    kept = f" {path} is as it was." if os.path.exists(path) else ""
    return StreambpError(f"Cannot write {role} {path}: {reason}.{kept} Free space there, or {fix[0].lower()}{fix[1:]}")


@contextlib.contextmanager
def reporting(path, role, fix=None):
    """Turn a full disk or a read-only file system while writing `path` in place (a log) into a StreambpError."""
    try:
        yield
    except OSError as e:
        if write_failed(e):
            raise cannot_write(path, role, e, fix or default_fix(role)) from None
        raise


@contextlib.contextmanager
def atomic_path(path, role="the output", fix=None, guard=None):
    """Yield a temporary path beside `path`; when the block succeeds, fsync it, give it the permissions of the
    file it replaces (or 0o666 less the umask) and rename it over `path`. A symlink `path` stays a link and
    its target is replaced. On any error the temporary file is removed and `path` is left as it was; a full
    disk or a read-only file system is a StreambpError naming `role`. `guard` defaults to current()."""
    path = os.fspath(path)
    fix = fix or default_fix(role)
    (guard or current()).check(path, role, fix)
    target = os.path.realpath(path)
    directory = os.path.dirname(target)
    remove_stale_temporaries(directory)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".tmp-{os.getpid()}-", suffix=f"-{os.path.basename(target)}",
                                   dir=directory)
        os.close(fd)
    except OSError as e:
        raise cannot_write(path, role, e, fix) from None
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        try:
            mode = stat.S_IMODE(os.stat(target).st_mode)
        except FileNotFoundError:
            mode = 0o666 & ~umask()
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if write_failed(e):
            raise cannot_write(path, role, e, fix) from None
        raise


def make_dir(path, role):
    """os.makedirs(path, exist_ok=True), with a StreambpError naming `role` when it names a file or cannot be
    created."""
    try:
        os.makedirs(path, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise StreambpError(f"{role} {path} is not a directory (a file of that name, or on its path, exists). "
                            f"{default_fix(role)}") from None
    except OSError as e:
        raise StreambpError(f"Cannot create {role} {path}: {e.strerror}. {default_fix(role)}") from None


def lock_holder(directory):
    """The pid holding a flock on `directory`, from Linux's /proc/locks, or "unknown"."""
    st = os.stat(directory)
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    with contextlib.suppress(OSError), open("/proc/locks") as f:
        for line in f:
            fields = line.split()
            if "FLOCK" in fields and inode in fields:
                return fields[fields.index(inode) - 1]
    return "unknown"


@contextlib.contextmanager
def locked(directory, role):
    """Hold an exclusive flock on `directory` itself (no lock file; freed when the process ends, even by
    SIGKILL), or raise a StreambpError naming the process that holds it."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise StreambpError(f"Cannot lock {role} {directory}: {e.strerror}. {default_fix(role)}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StreambpError(f"{role} {directory} is in use by another streambp process (pid "
                                f"{lock_holder(directory)}); wait for it to finish, or choose another "
                                f"{role}.") from None
        yield
    finally:
        os.close(fd)  # releases the lock
