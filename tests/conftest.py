import hashlib
import os
import subprocess
import sys
import tempfile
import traceback

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import Phase, settings
from typer.testing import CliRunner

from pathlib import Path

pytest_plugins = ["streambp.testing"]  # register_plugin, fresh_plugin_manager, blobs_parquet, ...
pytest.register_assert_rewrite("streambp.testing")  # imported below, before pytest loads it as a plugin

from streambp.testing import blobs as gaussian_blobs  # noqa: E402

# Hypothesis draws the same examples on every run, so CI is never red by chance; a bug found once stays an
# @example. STREAMBP_HYPOTHESIS=explore draws new examples each run and reports failures without shrinking.
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", phases=[Phase.explicit, Phase.reuse, Phase.generate])
settings.load_profile(os.environ.get("STREAMBP_HYPOTHESIS", "repeatable"))

# `fit --cache auto` writes here, not in the user's ~/.cache (subprocesses inherit it)
os.environ["STREAMBP_CACHE_DIR"] = tempfile.mkdtemp(prefix="streambp-test-cache-")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def make_blobs(n=600, d=5, k=3, seed=0):
    """streambp.testing.blobs under the names the tests use: X float32 [n, d], y int64 [n] in 0..k-1."""
    return gaussian_blobs(rows=n, features=d, classes=k, seed=seed)


def blob_table(X, y, label_values=None):
    cols = {f"x{j}": X[:, j] for j in range(X.shape[1])}
    cols["label"] = y if label_values is None else [label_values[v] for v in y]
    return pa.table(cols)


@pytest.fixture
def blobs():
    return make_blobs()


@pytest.fixture
def blob_file(tmp_path, blobs):
    """One Parquet file with float32 columns x0..x4 and an int64 label with 3 classes."""
    path = tmp_path / "blobs.parquet"
    pq.write_table(blob_table(*blobs), path, row_group_size=128)
    return path


@pytest.fixture
def blob_dir(tmp_path, blobs):
    """The same rows split over 4 files in a directory, each in several small row groups."""
    X, y = blobs
    d = tmp_path / "parts"
    d.mkdir()
    for i, rows in enumerate(np.array_split(np.arange(len(y)), 4)):
        pq.write_table(blob_table(X[rows], y[rows]), d / f"part-{i}.parquet", row_group_size=37)
    return d


@pytest.fixture
def mnist_train():
    return EXAMPLES / "mnist_train.parquet"


@pytest.fixture
def mnist_test():
    return EXAMPLES / "mnist_test.parquet"


@pytest.fixture(autouse=True)
def in_tmp_path(run_in_tmp_path):
    """Every test runs in its own directory, so default output paths never land in the checkout."""


def run(*args):
    """Run the streambp CLI in-process on the given arguments (str() of each); the CliRunner result."""
    from streambp.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def invoke(*args):
    """Run the CLI in-process; fail with the exception and output unless it exits 0."""
    result = run(*args)
    if result.exit_code != 0:
        detail = ""
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            detail = "".join(traceback.format_exception(*result.exc_info))
        command = " ".join(map(str, args))
        pytest.fail(f"streambp {command} exited {result.exit_code}:\n{result.output}\n{detail}")
    return result


def streambp_cli(*args):
    """Run the installed streambp script in a subprocess on the given arguments (str() of each); the
    CompletedProcess, after checking that no traceback was printed."""
    exe = os.path.join(os.path.dirname(sys.executable), "streambp")
    proc = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=600)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc


def spec_of(source, label="label", features=None, standardize=False):
    """The FeatureSpec fit's pre-pass gives a source (unscaled unless asked: tests compare with raw rows)."""
    from streambp.features import Choices, scan

    return scan(source, label, Choices(features=features, standardize=standardize))[1]


def checksums(directory):
    """{relative path: sha256} of every file under directory: what a command must leave unchanged."""
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return out
