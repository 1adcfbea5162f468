"""Pytest fixtures for testing streambp and its plugins. Load them in a test module (or the root
conftest.py) with

    pytest_plugins = ["streambp.testing"]

- register_plugin: register_plugin(plugin, name) registers a plugin on streambp's plugin manager for one
  test and unregisters it afterwards; a plugin already registered (by its entry point, when its package is
  installed) is left as it is.
- fresh_plugin_manager: the plugin manager rebuilt for the test (after its monkeypatches, e.g. of
  STREAMBP_LOAD_PLUGINS) and rebuilt again afterwards.
- blobs_parquet: a small Parquet file in tmp_path (write_blobs with its defaults): float32 columns x0..x4
  and an int64 label with 3 classes, 600 rows of Gaussian blobs, row groups of 128 rows;
  make_blobs_parquet(**write_blobs options) writes another one there.
- run_in_tmp_path: the test runs in tmp_path, so that default output paths never land in the checkout.
"""
import pytest

from .plugins import get_plugin_manager, reset_plugin_manager


def blobs(rows=600, features=5, classes=3, seed=0):
    """Separable-ish Gaussian blobs: X float32 [rows, features], y int64 [rows] in 0..classes-1."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, size=(classes, features))
    y = rng.integers(0, classes, size=rows)
    X = (centers[y] + rng.normal(size=(rows, features))).astype(np.float32)
    return X, y


def write_blobs(path, rows=600, features=5, classes=3, seed=0, row_group_size=128):
    """blobs(...) written to the Parquet file path as columns x0, x1, ... and label; returns path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    X, y = blobs(rows, features, classes, seed)
    pq.write_table(pa.table({**{f"x{j}": X[:, j] for j in range(features)}, "label": y}), path,
                   row_group_size=row_group_size)
    return path


@pytest.fixture
def register_plugin():
    """register_plugin(plugin, name) -> plugin, registered for this test only."""
    names = []

    def register(plugin, name):
        pm = get_plugin_manager()
        if not pm.is_registered(plugin):
            pm.register(plugin, name=name)
            names.append(name)
        return plugin

    yield register
    pm = get_plugin_manager()
    for name in names:
        if pm.has_plugin(name):
            pm.unregister(name=name)


@pytest.fixture
def fresh_plugin_manager():
    reset_plugin_manager()
    yield
    reset_plugin_manager()


@pytest.fixture
def blobs_parquet(tmp_path):
    return write_blobs(tmp_path / "blobs.parquet")


@pytest.fixture
def make_blobs_parquet(tmp_path):
    def make(name="blobs.parquet", **options):
        return write_blobs(tmp_path / name, **options)

    return make


@pytest.fixture
def run_in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
