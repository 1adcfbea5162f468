"""The network: layer sizes, one flat parameter buffer with per-layer views, and its file format.

Model file (format version 2): a NumPy .npz archive, read with allow_pickle=False, holding
  theta     float32 or float64 [P], every layer's W [O, I] (row-major) then b [O], first layer first
  metadata  uint8 [n], UTF-8 JSON: {"format": "streambp-model", "format_version": 2, "sizes": [D, H.., K],
            "classes": [...], "label_type": "int64" | "string" | ..., "features": [names], "input_column":
            null or the name of one list column holding all D features, "standardized": bool,
            "training": {...}}
  scaler_mean, scaler_inv_std  [D], only when "standardized": inputs are used as (x - mean) * inv_std
Version 1 is version 2 without standardisation; it still loads.
"""
import json
import os
import zipfile

import numpy as np

from .atomic import atomic_path
from .errors import StreambpError
from .features import FeatureSpec
from .kernels.network import network_predict_proba

FORMAT = "streambp-model"
FORMAT_VERSION = 3


def make_layout(sizes):
    """layout[L, 4] = (I, O, offset of W_l in theta, offset of layer l's units) for sizes [D, H.., K]."""
    L = len(sizes) - 1
    layout = np.zeros((L, 4), dtype=np.int64)
    p = q = 0
    for l in range(L):
        I, O = sizes[l], sizes[l + 1]
        layout[l] = (I, O, p, q)
        p += O * I + O
        q += O
    return layout


def parameter_count(sizes):
    return int(sum(sizes[l + 1] * (sizes[l] + 1) for l in range(len(sizes) - 1)))


class Workspace:
    """Preallocated activations, errors and per-row buffers for minibatches of up to `rows` rows."""

    def __init__(self, sizes, rows, dtype):
        units = int(sum(sizes[1:]))
        self.rows = rows
        self.acts = np.empty(rows * units, dtype=dtype)
        self.deltas = np.empty(rows * units, dtype=dtype)
        self.losses = np.empty(rows, dtype=dtype)
        self.ones = np.ones(rows, dtype=dtype)


class Model:
    """A trained (or freshly initialised) network and what it needs to read data like its training set.

    layers: list of (W [O, I], b [O]) numpy views into the flat buffer theta, as in z = W a + b.
    classes: labels in output order; features: input column names in order.
    """

    def __init__(self, sizes, theta, classes, features, label_type="int64", input_column=None,
                 training=None, mean=None, inv_std=None):
        """features: the input column names, or a features.FeatureSpec (which then also gives the input
        column, the scaler, the fills and the categorical columns)."""
        self.sizes = [int(s) for s in sizes]
        self.layout = make_layout(self.sizes)
        spec = features if isinstance(features, FeatureSpec) else \
            FeatureSpec.plain(list(features), input_column, mean, inv_std)
        self.slots = spec.slots
        P = parameter_count(self.sizes) + self.slots * self.sizes[1]
        if theta.shape != (P,):
            raise ValueError(f"theta has shape {theta.shape}, sizes {self.sizes} and {self.slots} categorical slots "
                             f"need {P} parameters")
        self.theta = np.ascontiguousarray(theta)
        self.classes = list(classes)
        self.label_type = label_type
        self.training = dict(training or {})
        if spec.mean is not None:
            spec.mean = np.asarray(spec.mean, dtype=self.theta.dtype)
            spec.inv_std = np.asarray(spec.inv_std, dtype=self.theta.dtype)
        self.spec = spec

    @property
    def features(self):
        return self.spec.features

    @property
    def input_column(self):
        return self.spec.input_column

    @property
    def mean(self):
        return self.spec.mean

    @property
    def inv_std(self):
        return self.spec.inv_std

    @property
    def table(self):
        """The embedding table E [V, H1] of the categorical slots (a view into theta)."""
        P = parameter_count(self.sizes)
        return self.theta[P:].reshape(self.slots, self.sizes[1])

    @classmethod
    def initialise(cls, sizes, classes, features, seed=0, dtype=np.float32, **kwargs):
        """Glorot (Xavier) uniform weights, U(-r, r) with r = sqrt(6 / (I + O)), and zero biases."""
        rng = np.random.default_rng(seed)
        slots = features.slots if isinstance(features, FeatureSpec) else 0
        theta = np.zeros(parameter_count(sizes) + slots * sizes[1], dtype=dtype)
        model = cls(sizes, theta, classes, features, **kwargs)
        for l, (W, _) in enumerate(model.layers):
            # the first layer's inputs are the D numeric inputs and one slot per categorical column
            fan_in = W.shape[1] + (len(model.spec.categorical) if l == 0 else 0)
            r = np.sqrt(6.0 / (W.shape[0] + fan_in))
            W[...] = rng.uniform(-r, r, size=W.shape)
            if l == 0 and slots:
                model.table[...] = rng.uniform(-r, r, size=model.table.shape)
        return model

    @property
    def layers(self):
        out = []
        for I, O, p, _ in self.layout:
            out.append((self.theta[p:p + O * I].reshape(O, I), self.theta[p + O * I:p + O * I + O]))
        return out

    @property
    def hidden(self):
        return self.sizes[1:-1]

    def predict_proba(self, X, batch_rows=4096):
        """Class probabilities [N, K] for X [N, D], computed batch_rows rows at a time."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.sizes[0]:
            raise ValueError(f"X must have shape (N, {self.sizes[0]}), got {X.shape}")
        X = np.ascontiguousarray(X, dtype=self.theta.dtype)
        if self.mean is not None:
            X = (X - self.mean) * self.inv_std
        probs = np.empty((X.shape[0], self.sizes[-1]), dtype=self.theta.dtype)
        ws = Workspace(self.sizes, min(batch_rows, max(X.shape[0], 1)), self.theta.dtype)
        for s in range(0, X.shape[0], ws.rows):
            network_predict_proba(probs[s:s + ws.rows], ws.acts, self.theta, self.layout, X[s:s + ws.rows])
        return probs

    def predict(self, X):
        """Predicted labels [N], in the user's own label values."""
        return np.asarray(self.classes, dtype=object if "string" in self.label_type else None)[
            self.predict_proba(X).argmax(axis=1)]

    def metadata(self):
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "sizes": self.sizes,
            "classes": self.classes, "label_type": self.label_type, "features": self.features,
            "input_column": self.input_column, "standardized": self.mean is not None, "training": self.training,
            "slots": self.slots, "inputs": self.spec.to_metadata(),
        }

    def save(self, path):
        """Write the model file atomically (temporary file, fsync, rename)."""
        meta = np.frombuffer(json.dumps(self.metadata()).encode("utf-8"), dtype=np.uint8)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                scaler = {} if self.mean is None else {"scaler_mean": self.mean, "scaler_inv_std": self.inv_std}
                np.savez(f, theta=self.theta, metadata=meta, **scaler)


def load(path):
    """Read a model file written by Model.save."""
    path = os.fspath(path)
    not_model = f"{path} is not a streambp model file"
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise StreambpError(f"{not_model} (it holds a single array, not a model archive).")
        with z:
            theta = z["theta"]
            meta = json.loads(z["metadata"].tobytes().decode("utf-8"))
            scaler = (z["scaler_mean"], z["scaler_inv_std"]) if isinstance(meta, dict) and meta.get("standardized") \
                else (None, None)
    except FileNotFoundError:
        raise StreambpError(f"Model file {path} does not exist.") from None
    except IsADirectoryError:
        raise StreambpError(f"Model file {path} is a directory.") from None
    except KeyError as e:
        raise StreambpError(f"{not_model} (no {e.args[0]!r} array).") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, UnicodeDecodeError):
        raise StreambpError(f"{not_model} (not a readable .npz archive).") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise StreambpError(f"{not_model} (its metadata does not say format {FORMAT!r}).")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise StreambpError(f"{path} has model format version {version}; this streambp reads versions up to "
                            f"{FORMAT_VERSION}. Upgrade streambp to read it.")
    missing = [k for k in ("sizes", "classes", "features") if k not in meta]
    if missing:
        raise StreambpError(f"{not_model} (its metadata lacks {', '.join(missing)}).")
    try:
        features = FeatureSpec.from_metadata(meta["inputs"], *scaler) if "inputs" in meta else meta["features"]
        return Model(meta["sizes"], theta, meta["classes"], features, meta.get("label_type", "int64"),
                     meta.get("input_column"), meta.get("training"), *scaler)
    except StreambpError as e:
        raise StreambpError(f"{not_model}: {e}.") from None
    except (TypeError, ValueError) as e:
        raise StreambpError(f"{not_model} ({e}).") from None
