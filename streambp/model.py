"""The network: layer sizes, one flat parameter buffer with per-layer views, and its file format.

Model file (format version 3): a NumPy .npz archive, read with allow_pickle=False, holding
  theta     float32 or float64 [P], every layer's W [O, I] (row-major) then b [O], first layer first, then
            the embedding table E [V, H1] of the categorical slots (V = "slots", 0 without categorical columns)
  metadata  uint8 [n], UTF-8 JSON: {"format": "streambp-model", "format_version": 3, "sizes": [D, H.., K],
            "classes": [...], "label_type": "int64" | "string" | ..., "features": [names of the D numeric
            inputs], "input_column": null or the name of one list column holding all D features,
            "standardized": bool, "slots": V, "inputs": {the column roles, fills and vocabularies: see
            features.FeatureSpec.to_metadata}, "training": {...}}
  scaler_mean, scaler_inv_std  [D], only when "standardized": inputs are used as (x - mean) * inv_std
Versions 1 and 2 (numeric columns only, nulls not filled) still load.

Every loader (load, the checkpoint loader, --init) goes through read_model(): the archive's .npy headers are
checked before any data is read (archive.py), then each section of the format by its own check_* function
("PATH is not a usable streambp model: <what>"); a new format version adds its sections there.
"""
import os

import numpy as np
import pyarrow as pa

from .archive import Archive, BadArchive, write_archive
from .atomic import current
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
        return self.theta[parameter_count(self.sizes):].reshape(self.slots, self.sizes[1])

    @classmethod
    def initialise(cls, sizes, classes, features, seed=0, dtype=np.float32, **kwargs):
        """Glorot (Xavier) uniform weights, U(-r, r) with r = sqrt(6 / (I + O)), and zero biases; the first
        layer's fan-in counts one input per categorical column, and its embedding table is drawn like W."""
        rng = np.random.default_rng(seed)
        slots = features.slots if isinstance(features, FeatureSpec) else 0
        theta = np.zeros(parameter_count(sizes) + slots * sizes[1], dtype=dtype)
        model = cls(sizes, theta, classes, features, **kwargs)
        for l, (W, _) in enumerate(model.layers):
            r = np.sqrt(6.0 / (W.shape[0] + W.shape[1] + (len(model.spec.categorical) if l == 0 else 0)))
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
        """Class probabilities [N, K], computed batch_rows rows at a time, for X: a table holding the model's
        columns (a pyarrow Table or RecordBatch, a pandas DataFrame, or a dict of columns), read with the
        model's preprocessing (fills, categories, scaling), or an array [N, D] of the numeric inputs of a
        model without categorical columns (scaled here when the model is standardised)."""
        if not isinstance(X, np.ndarray) and not isinstance(X, (list, tuple)):
            from .stream import encode_table

            X, idx = encode_table(self, X)
        else:
            if self.spec.categorical:
                raise ValueError(f"this model reads categorical columns ({self.spec.categorical[0].name}, ...): "
                                 "give a table of its columns, not an array")
            X = np.asarray(X)
            if X.ndim != 2 or X.shape[1] != self.sizes[0]:
                raise ValueError(f"X must have shape (N, {self.sizes[0]}), got {X.shape}")
            X = np.ascontiguousarray(X, dtype=self.theta.dtype)
            if self.mean is not None:
                X = (X - self.mean) * self.inv_std
            idx = np.empty((X.shape[0], 0), np.int32)
        probs = np.empty((X.shape[0], self.sizes[-1]), dtype=self.theta.dtype)
        ws = Workspace(self.sizes, min(batch_rows, max(X.shape[0], 1)), self.theta.dtype)
        for s in range(0, X.shape[0], ws.rows):
            network_predict_proba(probs[s:s + ws.rows], ws.acts, self.theta, self.layout, X[s:s + ws.rows],
                                  idx[s:s + ws.rows])
        return probs

    def predict(self, X):
        """Predicted labels [N], in the user's own label values."""
        return np.asarray(self.classes, dtype=object if "string" in self.label_type else None)[
            self.predict_proba(X).argmax(axis=1)]

    @classmethod
    def from_metadata(cls, meta, arrays):
        """The model of a (validated) metadata dict and its arrays: theta, and scaler_mean/scaler_inv_std when
        meta["standardized"]."""
        scaler = arrays.get("scaler_mean"), arrays.get("scaler_inv_std")
        features = FeatureSpec.from_metadata(meta["inputs"], *scaler) if "inputs" in meta else meta["features"]
        return cls(meta["sizes"], arrays["theta"], meta["classes"], features, meta.get("label_type", "int64"),
                   meta.get("input_column"), meta.get("training"), *scaler)

    def metadata(self):
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "sizes": self.sizes,
            "classes": self.classes, "label_type": self.label_type, "features": self.features,
            "input_column": self.input_column, "standardized": self.mean is not None, "training": self.training,
            "slots": self.slots, "inputs": self.spec.to_metadata(),
        }

    def arrays(self):
        """The arrays of the file format: theta, and the scaler's when standardised."""
        scaler = {} if self.mean is None else {"scaler_mean": self.mean, "scaler_inv_std": self.inv_std}
        return {"theta": self.theta, **scaler}

    def save(self, path, role="the model file"):
        """Write the model file atomically (temporary file, fsync, rename) through the output guard."""
        write_archive(path, "metadata", self.metadata(), self.arrays(), role)


# The validator: one function per section of the format, each raising Invalid(what is wrong). A new format
# version adds its own sections; the older versions keep their checks.

class Invalid(Exception):
    """What makes a model unusable, for "PATH is not a usable streambp model: <what>"."""


FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def check_header(meta):
    """format and format_version; returns the version."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise Invalid(f"its metadata does not say format {FORMAT!r}")
    version = meta.get("format_version")
    if not is_int(version) or version < 1:
        raise Invalid(f"format_version is {version!r}, not a positive integer")
    return version


def check_fields(meta, version):
    """The metadata's field types."""
    missing = [k for k in ("sizes", "classes", "features") if k not in meta]
    if missing:
        raise Invalid(f"its metadata lacks {', '.join(missing)}")
    types = {"sizes": list, "classes": list, "features": list, "label_type": str, "input_column": (str, type(None)),
             "standardized": bool, "training": (dict, type(None))}
    for key, kind in types.items():
        if key in meta and not isinstance(meta[key], kind):
            raise Invalid(f"metadata field {key!r} is {type(meta[key]).__name__} {meta[key]!r:.80}")
    if version < 2 and meta.get("standardized"):
        raise Invalid("a version 1 model cannot be standardized")
    if (version >= 3 or "inputs" in meta or "slots" in meta) and \
            not (isinstance(meta.get("inputs"), dict) and is_int(meta.get("slots"))):
        raise Invalid("a version 3 model needs its 'inputs' description and 'slots'")


def check_sizes(meta):
    """sizes: two or more positive integers [D, H.., K] (D may be 0 when categorical slots feed layer 1)."""
    sizes = meta["sizes"]
    if len(sizes) < 2 or not all(is_int(s) and s > 0 for s in sizes[1:]) or not is_int(sizes[0]) or \
            sizes[0] < (0 if meta.get("slots") else 1):
        raise Invalid(f"sizes {sizes!r:.80} are not two or more positive integers")
    return sizes


def check_inputs(meta):
    """A version 3 model's inputs: a well-formed description whose numeric inputs are the features and whose
    slots are the model's. Returns the number of slots."""
    if "inputs" not in meta:
        return 0
    try:
        spec = FeatureSpec.from_metadata(meta["inputs"])
    except StreambpError as e:
        raise Invalid(str(e)) from None
    if spec.features != meta["features"] or spec.slots != meta["slots"]:
        raise Invalid("its inputs description does not match its features and slots")
    return spec.slots


def check_names(meta):
    """features (one name per input) and classes (one distinct value per output, of label_type)."""
    sizes, features, classes = meta["sizes"], meta["features"], meta["classes"]
    if len(features) != sizes[0] or not all(isinstance(f, str) for f in features):
        raise Invalid(f"it has {len(features)} feature names for {sizes[0]} inputs")
    if meta.get("input_column") is None and len(set(features)) != len(features):
        raise Invalid("its feature names repeat")
    if len(classes) != sizes[-1]:
        raise Invalid(f"it has {len(classes)} classes for {sizes[-1]} outputs")
    label_type = meta.get("label_type", "int64")
    try:
        kind = pa.type_for_alias(label_type)
        python = int if pa.types.is_integer(kind) else str if pa.types.is_string(kind) or \
            pa.types.is_large_string(kind) else bool if pa.types.is_boolean(kind) else \
            (int, float) if pa.types.is_floating(kind) else None
        if python is None or any(isinstance(v, bool) != (python is bool) or not isinstance(v, python)
                                 for v in classes):
            raise ValueError
        pa.array(classes, type=kind)
    except (ValueError, TypeError, OverflowError, pa.ArrowException):
        raise Invalid(f"classes {classes!r:.80} are not values of label_type {label_type!r:.40}") from None
    if len(set(classes)) != len(classes):
        raise Invalid(f"classes {classes!r:.80} repeat")


def check_array(archive, name, shape, dtypes):
    """A member's header: `shape` and one of `dtypes`, checked before its data is read."""
    if name not in archive.headers:
        raise Invalid(f"no {name!r} array")
    got_shape, got_dtype = archive.headers[name]
    if got_shape != shape or got_dtype not in dtypes:
        raise Invalid(f"{name!r} is {got_dtype} {got_shape}; expected {' or '.join(map(str, dtypes))} {shape}")


def check_values(arrays):
    """Finite parameters; a finite scaler with inv_std > 0."""
    if not np.all(np.isfinite(arrays["theta"])):
        raise Invalid("its parameters (theta) hold NaN or inf")
    if "scaler_mean" in arrays:
        if not (np.all(np.isfinite(arrays["scaler_mean"])) and np.all(np.isfinite(arrays["scaler_inv_std"]))
                and np.all(arrays["scaler_inv_std"] > 0)):
            raise Invalid("its scaler holds NaN, inf or a non-positive inv_std")


def read_model(archive, meta, prefix=""):
    """The Model of `meta` and the archive's arrays (named prefix + "theta", ...), validated section by
    section; raises Invalid or archive.BadArchive."""
    version = check_header(meta)
    if version > FORMAT_VERSION:
        raise Invalid(f"it has model format version {version}; this streambp reads versions up to "
                      f"{FORMAT_VERSION}. Upgrade streambp to read it")
    check_fields(meta, version)
    sizes = check_sizes(meta)
    check_names(meta)
    slots = check_inputs(meta)
    check_array(archive, prefix + "theta", (parameter_count(sizes) + slots * sizes[1],), FLOATS)
    arrays = {"theta": archive.array(prefix + "theta")}
    if meta.get("standardized"):
        for name in ("scaler_mean", "scaler_inv_std"):
            check_array(archive, prefix + name, (sizes[0],), FLOATS)
            with np.errstate(over="ignore"):  # in theta's dtype, as it is used: 1e300 becomes inf in float32
                arrays[name] = archive.array(prefix + name).astype(arrays["theta"].dtype)
    check_values(arrays)
    return Model.from_metadata(meta, arrays)


def not_readable(path, error):
    """The StreambpError of a model file that cannot be opened as one."""
    if isinstance(error, FileNotFoundError):
        return StreambpError(f"Model file {path} does not exist.")
    if isinstance(error, IsADirectoryError):
        return StreambpError(f"Model file {path} is a directory.")
    return StreambpError(f"{path} is not a streambp model file ({error}). Give the .npz file that "
                         "`streambp fit --out` wrote.")


def load(path, role="the model file"):
    """Read and validate a model file written by Model.save; it becomes an input (`role`) of the command."""
    path = os.fspath(path)
    current().protect(path, role)
    try:
        with Archive(path) as a:
            try:
                meta = a.json("metadata")
            except BadArchive as e:
                if "metadata" in a.headers:
                    raise
                raise BadArchive("no 'metadata' array" if a.headers else str(e)) from None
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise BadArchive(f"its metadata does not say format {FORMAT!r}")
            return read_model(a, meta)
    except (FileNotFoundError, IsADirectoryError, BadArchive) as e:
        raise not_readable(path, e) from None
    except OSError as e:
        raise StreambpError(f"Cannot read model file {path}: {e.strerror or e}.") from None
    except Invalid as e:
        raise StreambpError(f"{path} is not a usable streambp model: {e}.") from None
