"""Peak memory of `streambp fit` is bounded by its buffers, not by the size of the dataset."""
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DRIVER = """
import resource, sys
from streambp.train import FitConfig, fit
fit(FitConfig(data=sys.argv[1], hidden=[8], epochs=int(sys.argv[2]), batch_size=512, buffer_rows=4096, out=None,
              loggers=[], run_dir="none", cache=sys.argv[3]))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def write_dataset(directory, files, rows_per_file, width=64, seed=0):
    directory.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(files):
        X = rng.random((rows_per_file, width), dtype=np.float32)
        cols = {f"f{j}": X[:, j] for j in range(width)}
        cols["label"] = (X[:, 0] > 0.5).astype(np.int64)
        pq.write_table(pa.table(cols), directory / f"part-{i:03d}.parquet", row_group_size=20_000)
    return directory


def peak_rss_kib(path, epochs=1, cache="none"):
    out = subprocess.run([sys.executable, "-c", DRIVER, str(path), str(epochs), str(cache)], capture_output=True,
                         text=True, check=True)
    return int(out.stdout.split()[-1])


def test_peak_rss_does_not_grow_with_the_dataset(tmp_path):
    small = write_dataset(tmp_path / "small", files=2, rows_per_file=50_000)  # 25.6 MB of features
    many = write_dataset(tmp_path / "many", files=8, rows_per_file=50_000)  # 102 MB in 8 files
    one = write_dataset(tmp_path / "one", files=1, rows_per_file=400_000)  # 102 MB in 20 row groups of 1 file
    rss_small = peak_rss_kib(small)
    # Holding the larger datasets would add ~77 MB; the buffers are ~2 MB here.
    for large in (many, one / "part-000.parquet"):
        assert peak_rss_kib(large) - rss_small < 20 * 1024, (large, rss_small)


def test_epochs_read_from_the_cache_keep_peak_rss_bounded(tmp_path):
    """The cache is read block by block into the chunk buffers, not mapped or loaded: peak RSS of 3 epochs,
    2 of them from the cache, does not grow with the cached rows."""
    small = write_dataset(tmp_path / "small", files=2, rows_per_file=50_000)
    many = write_dataset(tmp_path / "many", files=8, rows_per_file=50_000)  # 102 MB of cached rows
    rss_small = peak_rss_kib(small, 3, tmp_path / "cache")
    rss_many = peak_rss_kib(many, 3, tmp_path / "cache")
    assert len(os.listdir(tmp_path / "cache")) == 2  # both were cached (and read by epochs 2 and 3)
    assert rss_many - rss_small < 20 * 1024, (rss_many, rss_small)
