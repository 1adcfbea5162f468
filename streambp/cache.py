"""--cache: the decoded rows of a stream (features encoded and scaled, categorical slots, class indices),
written during its first full pass and read back by later epochs and later runs instead of the data.

An entry is a directory <root>/<id>, id a hash of what decides the rows (the data files' paths, the source
and its options, the model's inputs description with its scaling, the classes, the dtype, the side of the
validation split, the bad-row rule), holding x.bin (rows of D floats), idx.bin (rows of C int32 slots),
y.bin (int32 class indices) and manifest.json: the files' sizes and modification times, the bad rows
dropped, and each unit of the source (a Parquet row group, a CSV or Arrow file; `Source.visit_units`) with
the offset and count of its rows. A later pass reads the units in the order the source would visit them
(the same draw from the epoch's generator), so its chunks are the very rows, in the very order, that
decoding gives. A pass writes into .tmp-<pid>-<id> and renames it into place only once every unit has been
read and the files are unchanged: what a killed or failed pass leaves is never read, and is removed later.
Later passes map only the rows of the chunk being assembled and copy them into the chunk buffers (shuffled on
the way), so memory stays that of the buffers.
"""
import contextlib
import hashlib
import json
import mmap
import os
import shutil
import sys
import time

import numpy as np

from . import __version__
from .atomic import TEMPORARY, alive, current, make_dir, remove_stale_temporaries
from .errors import StreambpError

FORMAT, VERSION = "streambp-cache", 1
MANIFEST = "manifest.json"
ARRAYS = ("x.bin", "idx.bin", "y.bin")
AUTO, NONE = "auto", "none"
AUTO_SHARE = 0.10  # --cache auto keeps its entries within this share of the free space of their file system


def default_root():
    """$STREAMBP_CACHE_DIR, else $XDG_CACHE_HOME/streambp, else ~/.cache/streambp."""
    return os.environ.get("STREAMBP_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "streambp")


FINGERPRINT_BYTES = 1 << 16


def file_stats(files):
    """[path, size, modification and change times in ns, hash of the first and last 64 KiB] of each file: what
    says that a file changed. The change time cannot be set back (as `touch -d` or `cp -p` set the modification
    time); the bytes catch a rewrite of the same size within one tick of the file system's clock (a Parquet
    file's footer, with its column statistics, is in its last bytes)."""
    stats = []
    for f in files:
        with open(f, "rb") as fh:
            st = os.fstat(fh.fileno())
            digest = hashlib.sha256(fh.read(FINGERPRINT_BYTES))
            fh.seek(max(FINGERPRINT_BYTES, st.st_size - FINGERPRINT_BYTES))
            digest.update(fh.read(FINGERPRINT_BYTES))
        stats.append([os.fspath(f), st.st_size, st.st_mtime_ns, st.st_ctime_ns, digest.hexdigest()[:32]])
    return stats


def describe(source, source_options, spec, encoder, dtype, split, skip_bad):
    """What decides the decoded rows of a stream, as JSON-able values (the entry's id hashes it)."""
    return {"format": FORMAT, "version": VERSION, "streambp": __version__,
            "files": [os.path.realpath(f) for f in source.files],
            "source": f"{type(source).__module__}.{type(source).__qualname__}",
            "source_options": {k: source_options[k] for k in sorted(source_options)},
            "inputs": spec.to_metadata(),
            "scaling": None if spec.mean is None else [np.asarray(spec.mean).tolist(),
                                                       np.asarray(spec.inv_std).tolist()],
            "label": encoder.column, "classes": encoder.value_set.to_pylist(),
            "label_type": str(encoder.value_set.type), "strict": encoder.strict,
            "dtype": np.dtype(dtype).name, "split": list(split) if split else None, "skip_bad": skip_bad}


# What is found in the data, as messages name it: an entry's id leaves it out, so that changed data or column
# roles replace the entry of the same files and settings rather than add one beside it.
DERIVED = {"inputs": "column roles or categories", "scaling": "scaling", "classes": "classes",
           "label_type": "label type"}


class Stale(Exception):
    """An entry that cannot be used; its message says why."""


class StreamCache:
    """The cache entry of one stream: read (`ready`), or written by the next full pass (`writer`)."""

    def __init__(self, root, source, identity, width, slots, dtype):
        self.root, self.source, self.identity = root, source, identity
        where = {k: v for k, v in identity.items() if k not in DERIVED}
        self.id = hashlib.sha256(json.dumps(where, sort_keys=True).encode()).hexdigest()[:20]
        self.path = os.path.join(root, self.id)
        self.width, self.slots, self.dtype = width, slots, np.dtype(dtype)
        self.units = source.visit_units()
        self.manifest = None
        self.note = ""

    @property
    def row_bytes(self):
        return self.width * self.dtype.itemsize + self.slots * 4 + 4

    def lookup(self):
        """Open and check the entry: None when it is usable (its files stay open, so that a later replacement
        of the entry cannot change what this one reads), else why not ("" when there is none)."""
        self.manifest = self.fds = None
        killed = [int(m.group(1)) for m in map(TEMPORARY.match, listing(self.root))
                  if m and m.string.endswith(self.id) and not alive(int(m.group(1)))]
        if not os.path.exists(os.path.join(self.path, MANIFEST)):
            return f"the pass that was writing it stopped before its end (process {killed[0]})" if killed else ""
        try:
            files = [open(os.path.join(self.path, name), "rb", buffering=0) for name in ARRAYS]
            m = self.check(self.read_manifest(), files)
        except Stale as e:
            return str(e)
        except OSError as e:
            return e.strerror or str(e)
        self.manifest, self.fds = m, files
        return None

    def read_manifest(self):
        with open(os.path.join(self.path, MANIFEST), "rb") as f:
            try:
                return json.loads(f.read(1 << 24))
            except (ValueError, RecursionError):
                raise Stale("its manifest is not valid JSON") from None

    def check(self, m, files):
        """The manifest `m`, if it describes this stream's entry and its open `files` completely and
        consistently; else Stale."""
        if not isinstance(m, dict) or not isinstance(m.get("identity"), dict):
            raise Stale("its manifest is incomplete")
        stats = file_stats(self.source.files)
        if m.get("files") != stats:
            changed = [s[0] for s, old in zip(stats, m.get("files") or []) if s != old] or [stats[0][0]]
            raise Stale(f"the data changed since it was written ({changed[0]})")
        if m["identity"] != self.identity:
            differ = [DERIVED.get(k, k) for k in self.identity if m["identity"].get(k) != self.identity[k]]
            raise Stale(f"it was written with other {', '.join(differ)}")
        rows, spans = m.get("rows"), m.get("units")
        if not (isinstance(rows, int) and isinstance(spans, list) and len(spans) == len(self.units)
                and isinstance(m.get("bad_rows"), int)):
            raise Stale("its manifest is incomplete")
        end = 0
        for span in sorted(s for s in spans if s is not None):
            if not (isinstance(span, list) and len(span) == 2 and all(isinstance(v, int) for v in span)
                    and span[0] == end and span[1] >= 0):
                raise Stale("its manifest's units do not tile its rows")
            end += span[1]
        if end != rows:
            raise Stale("its manifest's units do not tile its rows")
        for name, f, size in zip(ARRAYS, files, (self.width * self.dtype.itemsize, self.slots * 4, 4)):
            st = os.fstat(f.fileno())
            if st.st_size != rows * size:
                raise Stale(f"{name} is not the size its manifest says")
            if st.st_ino != os.stat(os.path.join(self.path, name)).st_ino:
                raise Stale("another process replaced it while it was opened")
        return m

    def size(self, rows):
        return rows * self.row_bytes

    def writer(self):
        """A Writer for the next full pass, or None (saying why) when it cannot be started."""
        remove_stale_temporaries(self.root)
        try:
            return Writer(self, os.path.join(self.root, f".tmp-{os.getpid()}-{self.id}"))
        except OSError as e:
            print(f"streambp: warning: the cache {self.path} is not written ({e.strerror or e}); every pass "
                  "decodes the data.", file=sys.stderr)
            return None

    def replay(self, buf, rng):
        """Hand `buf` (a stream.ChunkBuffer) the cached rows as mapped views, units in the order the source's
        batches would visit them with `rng`; yield each time it holds a whole chunk. Only the rows of the
        chunk being filled are mapped: buf drops them once it has copied them, which unmaps them."""
        spans = self.manifest["units"]
        order = range(len(spans)) if rng is None else rng.permutation(len(spans))
        for u in order:
            if spans[u] is None:
                continue
            start, count = spans[u]
            done = 0
            while done < count:
                n = min(buf.room, count - done)
                if buf.hold(self.rows(start + done, n)):
                    yield
                done += n
        touch(self.path)

    def rows(self, first, n):
        """(X [n, D], idx [n, C], y [n]) of rows first .. first + n, views of mapped pages."""
        shapes = ((n, self.width), (n, self.slots), (n,))
        return tuple(mapped(f, shape, dtype, first) for f, shape, dtype in
                     zip(self.fds, shapes, (self.dtype, np.int32, np.int32)))


def mapped(f, shape, dtype, first):
    """An array of `shape` over the open file f, starting at row `first` (rows of shape[1:]). The mapping is
    private and writable (copy-on-write: nothing reaches the file), so that the kernels see the array type
    they were compiled for, not a read-only one."""
    dtype = np.dtype(dtype)
    row = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    if row * shape[0] == 0:
        return np.empty(shape, dtype)
    offset = first * row
    base = offset - offset % mmap.ALLOCATIONGRANULARITY
    m = mmap.mmap(f.fileno(), offset + row * shape[0] - base, prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=base,
                  flags=mmap.MAP_PRIVATE)  # no MAP_POPULATE: it would fault the pages in for writing, copying them
    return np.frombuffer(m, dtype, int(np.prod(shape)), offset - base).reshape(shape)


def listing(directory):
    try:
        return os.listdir(directory)
    except OSError:
        return []


def touch(path):
    """Mark an entry used now (what --cache auto's pruning keeps longest)."""
    with contextlib.suppress(OSError):
        os.utime(os.path.join(path, MANIFEST))


class Writer:
    """Writes one full pass's rows, unit by unit, into a temporary directory; finish() makes it the entry.
    A write that fails (a full disk) drops the cache and lets the pass go on."""

    def __init__(self, cache, tmp):
        self.cache, self.tmp = cache, tmp
        self.stats = file_stats(cache.source.files)
        self.unit_of = {tuple(u): i for i, u in enumerate(cache.units)}
        self.spans = [None] * len(cache.units)
        self.unit = None
        self.rows = self.bad_rows = 0
        self.failed = None
        os.makedirs(tmp)
        try:
            self.files = [open(os.path.join(tmp, name), "wb") for name in ARRAYS]
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def at(self, f, row0):
        """A record batch of file f starting at row0 is next: a new unit when one starts there."""
        i = self.unit_of.get((os.fspath(f), row0))
        if i is not None:
            self.unit = i
            self.spans[i] = [self.rows, 0]

    def append(self, X, idx, y):
        """The kept rows of the current unit's next piece."""
        if self.failed:
            return
        if self.unit is None:
            self.failed = "the source yields rows outside its units"
            return
        try:
            for f, a in zip(self.files, (X, idx, y)):
                if a.size:
                    f.write(memoryview(np.ascontiguousarray(a)).cast("B"))
        except OSError as e:
            self.failed = e.strerror or str(e)
            return
        self.spans[self.unit][1] += len(y)
        self.rows += len(y)

    def finish(self):
        """Make the written pass the entry (replacing a stale one), unless a write failed or the data changed."""
        try:
            for f in self.files:
                f.flush()
                os.fsync(f.fileno())
                f.close()
            if self.failed is None and file_stats(self.cache.source.files) != self.stats:
                self.failed = "the data files changed while they were read"
            if self.failed is None:
                manifest = {"identity": self.cache.identity, "files": self.stats, "rows": self.rows,
                            "bad_rows": self.bad_rows, "units": self.spans, "bytes": self.cache.size(self.rows),
                            "created": time.time()}
                with open(os.path.join(self.tmp, MANIFEST), "w") as f:
                    json.dump(manifest, f)
                    f.flush()
                    os.fsync(f.fileno())
                replace_dir(self.tmp, self.cache.path)
                self.cache.lookup()  # the next pass reads it
                return
        except OSError as e:
            self.failed = e.strerror or str(e)
        self.abandon()
        print(f"streambp: warning: the cache {self.cache.path} was not written ({self.failed}); the next pass "
              "decodes the data again.", file=sys.stderr)

    def abandon(self):
        for f in self.files:
            with contextlib.suppress(OSError):  # a buffered write that fails again
                f.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def replace_dir(tmp, path):
    """Rename the finished directory tmp to path, moving an entry already there aside first."""
    old = None
    if os.path.exists(path):
        old = f"{tmp}-old"
        os.rename(path, old)
    os.rename(tmp, path)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def entries(root):
    """(path, manifest or None) of each entry directory under root; None for one without a readable manifest."""
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return []
    found = []
    for name in names:
        path = os.path.join(root, name)
        if TEMPORARY.match(name) or not os.path.isfile(os.path.join(path, MANIFEST)):
            continue
        try:
            with open(os.path.join(path, MANIFEST), "rb") as f:
                m = json.loads(f.read(1 << 24))
            found.append((path, m if isinstance(m, dict) and isinstance(m.get("identity"), dict)
                          and m["identity"].get("format") == FORMAT else None))
        except (OSError, ValueError, RecursionError):
            found.append((path, None))
    return found


def disk_bytes(path):
    """Bytes the files under path take."""
    total = 0
    for directory, _, names in os.walk(path):
        for n in names:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(directory, n))
    return total


def remove(path):
    """Delete a cache entry (a directory `entries` found), unless it holds an input of the command."""
    current().check_tree(path, "the cache entry")
    shutil.rmtree(path)


def prune(root, budget, keep):
    """Delete the least recently used entries under root (but `keep`) until they take at most `budget` bytes."""
    found = [(os.path.getmtime(os.path.join(p, MANIFEST)), p) for p, m in entries(root) if m is not None]
    total = sum(disk_bytes(p) for _, p in found)
    for _, p in sorted(found):
        if total <= budget:
            break
        if p != keep:
            total -= disk_bytes(p)
            remove(p)


def open_cache(setting, source, source_options, spec, encoder, dtype, split, skip_bad, rows, passes, what):
    """The StreamCache of a stream per the --cache setting ("auto", "none" or a directory), or None; its
    `note` says what it does: an entry that holds the rows is read; else one is written during the next full pass
    when the stream will be read at least twice more (`passes`) and its rows (at most `rows`) fit: within
    AUTO_SHARE of the free space for auto, within the free space for a directory. `what` names the stream."""
    if setting == NONE or not hasattr(source, "visit_units"):
        return None
    root = default_root() if setting == AUTO else setting
    identity = describe(source, source_options, spec, encoder, dtype, split, skip_bad)
    cache = StreamCache(root, source, identity, spec.width, len(spec.categorical), dtype)
    current().check_tree(cache.path, "the cache entry", "Give --cache none, or another --cache directory.")
    why = cache.lookup()
    if why is None:
        cache.note = f"Reading {what} from the cache {cache.path}."
        touch(cache.path)
        return cache
    if passes < 2:
        return None
    try:
        make_dir(root, "--cache")
    except StreambpError:
        if setting == AUTO:
            return None  # e.g. a read-only home directory: train without
        raise
    need, free = cache.size(rows), shutil.disk_usage(root).free
    if setting == AUTO and need > AUTO_SHARE * free:
        return None
    if need > free:
        raise StreambpError(f"--cache {setting}: caching {what} needs {need / 1e9:.1f} GB, and {free / 1e9:.1f} GB "
                            "are free there. Free space, choose another --cache directory, or give --cache none.")
    rebuilt = f" (rebuilding it: {why})" if why else ""
    cache.note = (f"Caching {what} in {cache.path} during the first pass ({need / 1e6:,.0f} MB at most){rebuilt}; "
                  "later passes read them from there (--cache none turns this off).")
    if setting == AUTO:
        prune(root, max(0.0, AUTO_SHARE * free - need), cache.path)
    return cache
