"""NumPy .npz archives with one UTF-8 JSON member (model files and checkpoints), written through the output
guard and read without pickle and without trusting the file: every member's .npy header (shape, dtype) is
read and checked against the member's real size before any array data is read, so a header that declares
1e11 floats is refused, not allocated."""
import json
import os
import zipfile

import numpy as np

from .atomic import atomic_path

# deflate cannot expand data more than ~1032 times: a member that claims more is lying about its size
MAX_DEFLATE_RATIO = 1100


class BadArchive(Exception):
    """What is wrong with an archive, for the caller's message ("PATH is not a ...: <what>")."""


def write_archive(path, meta_key, meta, arrays, role="the output", fix=None):
    """Write `arrays` and `meta` (JSON, as uint8 member `meta_key`) to the .npz `path`, atomically."""
    payload = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    with atomic_path(path, role, fix) as tmp, open(tmp, "wb") as f:
        np.savez(f, **{meta_key: payload}, **arrays)


class Archive:
    """An .npz opened for reading: `headers` maps each member name to (shape, dtype) from its .npy header."""

    def __init__(self, path):
        path = os.fspath(path)
        try:
            self.zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, ValueError, EOFError):
            raise BadArchive("not a readable .npz archive") from None
        self.members, self.headers = {}, {}
        try:
            disk = os.path.getsize(path)
            for info in self.zip.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                name = info.filename[:-4]
                if info.compress_size > disk or info.file_size > MAX_DEFLATE_RATIO * info.compress_size + 4096:
                    raise BadArchive(f"member {name!r} claims a size the file cannot hold")
                with self.zip.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read = {(1, 0): np.lib.format.read_array_header_1_0,
                            (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                    if read is None:
                        raise BadArchive(f"member {name!r} has .npy format version {version}")
                    shape, _, dtype = read(f)
                    data = info.file_size - f.tell()
                if dtype.hasobject:
                    raise BadArchive(f"member {name!r} holds Python objects (needs pickle, never loaded)")
                if int(np.prod(shape, dtype=object)) * dtype.itemsize != data:
                    raise BadArchive(f"member {name!r} declares shape {shape} of {dtype} but holds {data} bytes")
                self.members[name], self.headers[name] = info, (shape, dtype)
        except BadArchive:
            self.zip.close()
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as e:
            self.zip.close()
            raise BadArchive(f"not a readable .npz archive ({type(e).__name__})") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.zip.close()

    def array(self, name):
        """The member's array (its header already checked by the caller through `headers`)."""
        try:
            with self.zip.open(self.members[name]) as f:
                return np.lib.format.read_array(f, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise BadArchive(f"member {name!r} cannot be read ({type(e).__name__})") from None

    def json(self, name):
        """The JSON value stored as a 1-D uint8 member."""
        if name not in self.headers:
            raise BadArchive(f"no {name!r} member")
        shape, dtype = self.headers[name]
        if len(shape) != 1 or dtype != np.uint8:
            raise BadArchive(f"member {name!r} is {dtype} {shape}, not UTF-8 JSON bytes")
        try:
            return json.loads(self.array(name).tobytes().decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise BadArchive(f"member {name!r} is not UTF-8 JSON") from None
