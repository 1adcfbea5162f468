"""The cache of decoded rows (`fit --cache`, streambp/cache.py): later epochs and runs read the rows the first
pass decoded, the very rows in the very order, so results are bit-identical with and without it; a cache of
other data or settings, a changed file or a pass that did not finish is never read."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from conftest import checksums, spec_of
from streambp.cache import ARRAYS, MANIFEST, StreamCache, describe, entries
from streambp.registry import open_source
from streambp.stream import LabelEncoder, chunks

CLI = [sys.executable, "-c", "import sys; from streambp.cli import main; sys.argv[0] = 'streambp'; main()"]
# shuffled, several chunks per epoch, a validation split, so that any change of rows or order shows
FIT = ["--label", "label", "--hidden", "6", "--epochs", "3", "--batch-size", "16", "--buffer-rows", "96",
       "--deterministic", "--run-dir", "none", "--threads", "1"]


def cli(cwd, *args):
    r = subprocess.run([*CLI, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    return r


def fit(d, data, out, *extra, cache):
    r = cli(d, "fit", data, *FIT, "--out", out, "--cache", cache, *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    return np.load(d / out)["theta"], " ".join(r.stdout.split())


def table(rows=900, seed=0, inf_rows=()):
    """Numbers with nulls (filled, with an indicator), a string category, an integer label of 3 classes."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)
    x0 = pa.array(x[:, 0], mask=rng.random(rows) < 0.05)
    x1 = x[:, 1].copy()
    x1[list(inf_rows)] = np.inf
    color = pa.array(rng.choice(["red", "green", "blue", None], rows).tolist())
    return pa.table({"x0": x0, "x1": x1, "x2": x[:, 2], "color": color, "label": y})


def write(d, layout, t=None, seed=0):
    """The table in 3 files of a directory: Parquet in row groups of 50 rows, CSV or Arrow IPC."""
    t = t if t is not None else table(seed=seed)
    data = d / f"data-{layout}"
    data.mkdir(exist_ok=True)
    for i, part in enumerate((t.slice(0, 300), t.slice(300, 300), t.slice(600))):
        if layout == "parquet":
            pq.write_table(part, data / f"p{i}.parquet", row_group_size=50)
        elif layout == "csv":
            pcsv.write_csv(part, data / f"p{i}.csv")
        else:
            feather.write_feather(part, data / f"p{i}.arrow", chunksize=70)
    return data


def only_entry(cache_dir):
    (found,) = entries(cache_dir)
    return found


@pytest.mark.parametrize("layout", ["parquet", "csv", "arrow"])
def test_cached_epochs_and_runs_train_bit_identical_parameters(tmp_path, layout):
    data = write(tmp_path, layout)
    plain, _ = fit(tmp_path, data, "plain.npz", "--val-fraction", "0.2", cache="none")
    first, said = fit(tmp_path, data, "first.npz", "--val-fraction", "0.2", cache="c")
    assert "Caching the training rows in" in said and "Caching the validation rows in" in said
    second, said = fit(tmp_path, data, "second.npz", "--val-fraction", "0.2", cache="c")
    assert "Reading the training rows from the cache" in said and "Reading the validation rows" in said
    assert np.array_equal(plain, first) and np.array_equal(plain, second)
    history = [json.loads(np.load(tmp_path / n)["metadata"].tobytes())["training"]["history"]
               for n in ("plain.npz", "second.npz")]
    assert [h["val_loss"] for h in history[0]] == [h["val_loss"] for h in history[1]]


def test_a_cached_pass_reads_the_cache_not_the_data(tmp_path, monkeypatch):
    """The replay path is taken: decoding is made to fail, and the rows still come, equal to decoding's."""
    data = write(tmp_path, "parquet")
    source = open_source(str(data))
    spec = spec_of(source, standardize=True)
    encoder = LabelEncoder("label", [0, 1, 2], "int64", strict=True)
    identity = describe(source, {}, spec, encoder, "float32", None, False)

    def epoch(cache, seed):
        rng = np.random.default_rng(seed)
        return [(X.copy(), idx.copy(), y.copy()) for X, idx, y in
                chunks(source, spec, encoder, 64, np.float32, rng, cache=cache)]

    cache = StreamCache(str(tmp_path / "c"), source, identity, spec.width, len(spec.categorical), "float32")
    assert cache.lookup() == ""
    decoded = epoch(cache, 1)  # writes the entry
    assert cache.manifest is not None
    monkeypatch.setattr("streambp.stream.BatchDecoder.fill", lambda *a: pytest.fail("decoded a cached pass"))
    for seed in (1, 2):
        replayed = epoch(cache, seed)
        monkeypatch.undo()
        expected = decoded if seed == 1 else epoch(None, seed)
        monkeypatch.setattr("streambp.stream.BatchDecoder.fill", lambda *a: pytest.fail("decoded a cached pass"))
        assert len(replayed) == len(expected) > 3
        for a, b in zip(replayed, expected):
            assert all(np.array_equal(u, v) for u, v in zip(a, b))


def test_the_cache_directory_holds_what_its_manifest_says(tmp_path):
    data = write(tmp_path, "parquet")
    fit(tmp_path, data, "m.npz", cache="c")
    path, manifest = only_entry(tmp_path / "c")
    assert sorted(os.listdir(path)) == sorted([MANIFEST, *ARRAYS])
    sizes = {n: os.path.getsize(os.path.join(path, n)) for n in ARRAYS}
    assert sum(sizes.values()) == manifest["bytes"]
    width = 3 + 1  # x0, x1, x2 and x0's missing indicator
    assert manifest["rows"] == 900 and sizes["x.bin"] == 900 * width * 4 and sizes["y.bin"] == 900 * 4
    assert sizes["idx.bin"] == 900 * 4  # one categorical column
    assert len(manifest["units"]) == 18 and sum(n for _, n in manifest["units"]) == 900
    listed = json.loads(cli(tmp_path, "cache", "ls", "--dir", "c", "--json").stdout)
    assert [(e["rows"], e["bytes"], e["state"]) for e in listed] == [(900, manifest["bytes"] + os.path.getsize(
        os.path.join(path, MANIFEST)), "ok")]


def rewrite_keeping_size_and_times(path, change):
    """Rewrite a file in place with `change` applied to its bytes (same length), its times set back."""
    st = os.stat(path)
    content = path.read_bytes()
    new = change(content)
    assert len(new) == len(content) and new != content
    path.write_bytes(new)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("how", ["rewritten", "same size and times"])
def test_a_cache_of_changed_data_is_rebuilt_never_read(tmp_path, how):
    data = write(tmp_path, "csv")
    fit(tmp_path, data, "old.npz", cache="c")
    target = data / "p1.csv"
    if how == "rewritten":
        pcsv.write_csv(table(seed=5).slice(300, 300), target)
    else:  # the labels 0 <-> 1 swapped in the first lines: same bytes count, same modification time
        rewrite_keeping_size_and_times(target, lambda b: b[:400] + b[400:2000].replace(b",0\n", b",X\n").replace(
            b",1\n", b",0\n").replace(b",X\n", b",1\n") + b[2000:])
    plain, _ = fit(tmp_path, data, "plain.npz", cache="none")
    again, said = fit(tmp_path, data, "again.npz", cache="c")
    assert f"rebuilding it: the data changed since it was written ({target})" in said
    assert np.array_equal(plain, again)
    assert len(entries(tmp_path / "c")) == 1  # the stale entry was replaced


@pytest.mark.parametrize("flags, why", [
    (["--no-standardize"], "scaling"), (["--max-categories", "2"], "column roles or categories"),
    (["--ignore", "color"], "column roles or categories"), (["--val-fraction", "0.3"], None),
    (["--on-bad-rows", "skip"], None)])
def test_a_cache_of_other_settings_is_not_used(tmp_path, flags, why):
    """Settings that change what a row becomes replace the entry of the same data (saying so); those that
    change which rows are read (a split, skipping) have entries of their own."""
    data = write(tmp_path, "parquet")
    fit(tmp_path, data, "base.npz", cache="c")
    plain, _ = fit(tmp_path, data, "plain.npz", *flags, cache="none")
    other, said = fit(tmp_path, data, "other.npz", *flags, cache="c")
    assert "Caching the training rows" in said and np.array_equal(plain, other)
    if why:
        assert f"(rebuilding it: it was written with other {why})" in said
    assert len(entries(tmp_path / "c")) == (1 if why else 2 + ("--val-fraction" in flags))


def test_a_cache_left_by_a_killed_run_is_never_read(tmp_path):
    big = pa.concat_tables([table(seed=s) for s in range(40)])  # 36,000 rows: a first epoch of seconds
    data = write(tmp_path, "parquet", big)
    args = ["fit", data, "--label", "label", "--hidden", "64", "--batch-size", "1", "--epochs", "3", "--run-dir",
            "none", "--out", "killed.npz", "--cache", "c", "--threads", "1"]
    proc = subprocess.Popen([*CLI, *map(str, args)], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    partial = tmp_path / "c"
    deadline = time.monotonic() + 120
    while not any(n.startswith(f".tmp-{proc.pid}-") and os.path.getsize(partial / n / "x.bin") > 0
                  for n in (os.listdir(partial) if partial.is_dir() else [])):
        assert proc.poll() is None and time.monotonic() < deadline, "the first pass ended before it was killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert entries(partial) == []  # nothing of the pass became an entry
    small = ["--hidden", "6", "--epochs", "2", "--batch-size", "512", "--buffer-rows", "2048"]
    plain, _ = fit(tmp_path, data, "plain.npz", *small, cache="none")
    again, said = fit(tmp_path, data, "again.npz", *small, cache="c")
    assert f"rebuilding it: the pass that was writing it stopped before its end (process {proc.pid})" in said
    assert np.array_equal(plain, again)
    assert not [n for n in os.listdir(partial) if n.startswith(".tmp-")]  # what the killed pass left is gone


def truncate_x(path, m):
    with open(os.path.join(path, "x.bin"), "r+b") as f:
        f.truncate(os.path.getsize(os.path.join(path, "x.bin")) - 16)


def overlap_units(path, m):
    m["units"][1] = m["units"][0]
    write_manifest(path, m)


def garbage_manifest(path, m):
    with open(os.path.join(path, MANIFEST), "w") as f:
        f.write('{"identity": [' * 5000)


def write_manifest(path, m):
    with open(os.path.join(path, MANIFEST), "w") as f:
        json.dump(m, f)


@pytest.mark.parametrize("tamper, why", [
    (truncate_x, "x.bin is not the size its manifest says"),
    (overlap_units, "its manifest's units do not tile its rows"),
    (garbage_manifest, "its manifest is not valid JSON"),
    (lambda p, m: write_manifest(p, {**m, "rows": "900"}), "its manifest is incomplete"),
    (lambda p, m: os.remove(os.path.join(p, "y.bin")), "No such file or directory"),
])
def test_a_damaged_entry_is_rebuilt_with_the_reason(tmp_path, tamper, why):
    data = write(tmp_path, "parquet")
    fit(tmp_path, data, "first.npz", cache="c")
    tamper(*only_entry(tmp_path / "c"))
    plain, _ = fit(tmp_path, data, "plain.npz", cache="none")
    again, said = fit(tmp_path, data, "again.npz", cache="c")
    assert f"(rebuilding it: {why})" in said
    assert np.array_equal(plain, again)


def test_skipped_rows_are_counted_and_written_when_the_rows_come_from_the_cache(tmp_path):
    data = write(tmp_path, "parquet", table(inf_rows=[5, 350, 899]))
    skip = ["--on-bad-rows", "skip"]
    fit(tmp_path, data, "first.npz", *skip, cache="c")
    plain, _ = fit(tmp_path, data, "plain.npz", *skip, "--bad-rows-out", "plain-bad.parquet", cache="none")
    again, said = fit(tmp_path, data, "again.npz", *skip, "--bad-rows-out", "again-bad.parquet", cache="c")
    assert "Reading the training rows from the cache" in said and np.array_equal(plain, again)
    for name in ("first.npz", "again.npz"):
        assert json.loads(np.load(tmp_path / name)["metadata"].tobytes())["training"]["bad_rows"] == 3
    assert pq.read_table(tmp_path / "again-bad.parquet").column("_row").to_pylist() == \
        pq.read_table(tmp_path / "plain-bad.parquet").column("_row").to_pylist()
    assert sorted(pq.read_table(tmp_path / "again-bad.parquet").column("_file").to_pylist()) == sorted(
        [str(data / "p0.parquet"), str(data / "p1.parquet"), str(data / "p2.parquet")])


def test_cache_clear_deletes_entries_and_nothing_else(tmp_path):
    data = write(tmp_path, "parquet")
    fit(tmp_path, data, "a.npz", cache="c")
    fit(tmp_path, data, "b.npz", "--on-bad-rows", "skip", cache="c")
    mine = tmp_path / "c" / "notes"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    (tmp_path / "c" / "readme.txt").write_text("mine too")
    keep = checksums(data)
    (first, _), (second, _) = entries(tmp_path / "c")
    r = cli(tmp_path, "cache", "clear", os.path.basename(first), "--dir", "c")
    assert r.returncode == 0 and [p for p, _ in entries(tmp_path / "c")] == [second]
    r = cli(tmp_path, "cache", "clear", "--dir", "c")
    assert r.returncode == 0 and "Deleted 1 entries" in r.stdout and entries(tmp_path / "c") == []
    assert (mine / "keep.txt").read_text() == "mine" and (tmp_path / "c" / "readme.txt").exists()
    assert checksums(data) == keep
    r = cli(tmp_path, "cache", "clear", "0123", "--dir", "c")
    assert r.returncode == 2 and "has no cache entry '0123'" in r.stderr


def test_cache_clear_stale_keeps_valid_entries(tmp_path):
    data = write(tmp_path, "parquet")
    other = write(tmp_path, "csv")
    fit(tmp_path, data, "a.npz", cache="c")
    fit(tmp_path, other, "b.npz", cache="c")
    pcsv.write_csv(table(seed=9).slice(0, 300), other / "p0.csv")
    r = cli(tmp_path, "cache", "clear", "--stale", "--dir", "c")
    assert r.returncode == 0 and "Deleted 1 entries" in r.stdout
    (path, manifest), = entries(tmp_path / "c")
    assert manifest["files"][0][0] == str(data / "p0.parquet")


def test_a_cache_path_that_is_a_file_is_a_user_error(tmp_path):
    data = write(tmp_path, "parquet")
    (tmp_path / "afile").write_text("x")
    before = checksums(tmp_path)
    r = cli(tmp_path, "fit", data, *FIT, "--cache", "afile", "--out", "m.npz")
    assert r.returncode == 2 and "--cache afile is not a directory" in " ".join(r.stderr.split())
    assert checksums(tmp_path) == before


def test_a_cache_that_cannot_be_written_leaves_training_as_it_was(tmp_path):
    """A write that fails (here: the file-size limit, as a full disk would) drops the cache with a warning;
    the fit goes on, decoding every epoch, and trains exactly what an uncached fit does."""
    import resource

    data = write(tmp_path, "parquet", pa.concat_tables([table(seed=s) for s in range(20)]))  # 18,000 rows

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    plain, _ = fit(tmp_path, data, "plain.npz", cache="none")
    r = subprocess.run([*CLI, "fit", str(data), *FIT, "--out", "limited.npz", "--cache", "c"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300, preexec_fn=small_files)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "warning: the cache" in r.stderr and "was not written (File too large)" in r.stderr
    assert np.array_equal(plain, np.load(tmp_path / "limited.npz")["theta"])
    assert entries(tmp_path / "c") == [] and not [n for n in os.listdir(tmp_path / "c") if n.startswith(".tmp")]
