"""Model file format, Python API and atomic writes."""
import json
import zipfile

import numpy as np
import pytest

import streambp
from streambp.errors import StreambpError
from streambp.model import FORMAT_VERSION, Model, parameter_count


def small_model(classes=("a", "b", "c"), sizes=(4, 5, 3)):
    return Model.initialise(list(sizes), list(classes), ["f0", "f1", "f2", "f3"], seed=1, label_type="string")


def test_layers_are_views_of_the_flat_buffer_shaped_out_by_in():
    m = small_model(sizes=(4, 6, 5, 3))
    assert [(W.shape, b.shape) for W, b in m.layers] == [((6, 4), (6,)), ((5, 6), (5,)), ((3, 5), (3,))]
    assert m.theta.size == parameter_count(m.sizes) == 6 * 5 + 5 * 7 + 3 * 6
    for W, b in m.layers:
        r = np.sqrt(6 / (W.shape[0] + W.shape[1]))
        assert np.abs(W).max() <= r and np.all(b == 0) and W.std() > r / 4
    m.layers[1][0][0, 0] = 42.0
    assert 42.0 in m.theta


def test_predict_proba_matches_numpy_forward():
    m = small_model(sizes=(4, 6, 3))
    X = np.random.default_rng(0).normal(size=(10, 4))
    a = X
    for l, (W, b) in enumerate(m.layers):
        z = a @ W.T.astype(np.float64) + b
        a = 1 / (1 + np.exp(-z)) if l < len(m.layers) - 1 else np.exp(z - z.max(1, keepdims=True))
    a /= a.sum(1, keepdims=True)
    np.testing.assert_allclose(m.predict_proba(X), a, rtol=1e-5, atol=1e-6)
    assert list(m.predict(X)) == [m.classes[i] for i in a.argmax(1)]


def test_save_load_round_trip_without_pickle(tmp_path):
    m = small_model()
    m.training = {"epochs": 3}
    m.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        meta = json.loads(z["metadata"].tobytes())
    assert meta["format"] == "streambp-model" and meta["format_version"] == FORMAT_VERSION
    back = streambp.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(back.theta, m.theta)
    assert (back.sizes, back.classes, back.features, back.training) == (m.sizes, m.classes, m.features,
                                                                        m.training)
    np.testing.assert_array_equal(back.predict(np.ones((2, 4))), m.predict(np.ones((2, 4))))


def test_failed_save_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    path.write_bytes(b"precious")

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(RuntimeError):
        small_model().save(path)
    assert path.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


def test_newer_format_version_is_a_clear_error(tmp_path):
    m = small_model()
    meta = m.metadata() | {"format_version": FORMAT_VERSION + 1}
    np.savez(tmp_path / "new.npz", theta=m.theta, metadata=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    with pytest.raises(StreambpError, match=f"version {FORMAT_VERSION + 1}.*up to {FORMAT_VERSION}"):
        streambp.load(tmp_path / "new.npz")


def test_not_a_model_file(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(StreambpError, match="not a streambp model file"):
        streambp.load(tmp_path / "x.npz")
    with zipfile.ZipFile(tmp_path / "y.npz", "w") as z:
        z.writestr("other.npy", b"")
    with pytest.raises(StreambpError, match="not a streambp model file"):
        streambp.load(tmp_path / "y.npz")
