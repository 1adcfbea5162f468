"""Streaming evaluation and prediction with a trained model."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .atomic import atomic_path, current
from .errors import StreambpError
from .kernels.network import network_predict_proba
from .model import Workspace
from .features import (READ_ROWS, check_schemas, check_unique_names, is_numeric, is_temporal, is_text, is_vector,
                       require_column, value_type)
from .stream import BatchDecoder, LabelEncoder, chunks, prefetched


def model_spec(model, source):
    """The model's FeatureSpec, after checking that the source has its columns with usable types."""
    check_unique_names(source)
    spec = model.spec
    usable = {c.name: "numeric" for c in spec.numeric}
    usable.update({c.name: "categorical" for c in spec.categorical})
    names = set(source.schema.names)  # a set: a table of 20,000 columns is not 20,000 list scans
    for c in spec.columns:
        if c not in names:
            raise StreambpError(f"{source.files[0]} has no column {c!r}, which the model was trained on "
                                f"(the model reads the columns {', '.join(spec.columns[:8])}"
                                f"{', ...' if len(spec.columns) > 8 else ''}).")
        t = source.schema.field(c).type
        vt = value_type(t)
        ok = is_vector(t) if spec.input_column else \
            is_numeric(vt) or pa.types.is_boolean(vt) or is_text(vt) or pa.types.is_null(vt) \
            if usable[c] == "categorical" else \
            is_numeric(vt) or pa.types.is_boolean(vt) or pa.types.is_decimal(t) or is_temporal(t)
        if not ok:
            raise StreambpError(f"{source.files[0]}: column {c!r} has type {t}, which the model cannot use as "
                                f"a {usable.get(c, 'numeric')} feature.")
    check_schemas(source, spec.columns)
    return spec


def label_kind(t):
    """What kind of value a label type holds: integers, strings, booleans or floating-point codes."""
    t = t.value_type if pa.types.is_dictionary(t) else t
    return "integer" if pa.types.is_integer(t) else "string" if is_text(t) else \
        "boolean" if pa.types.is_boolean(t) else "floating-point" if pa.types.is_floating(t) else str(t)


def check_label_type(model, source, label):
    """The label column holds the kind of value the model's classes are (integers, strings, booleans or
    floating-point codes)."""
    t = source.schema.field(label).type
    if label_kind(t) != label_kind(pa.type_for_alias(model.label_type)):
        shown = ", ".join(map(repr, model.classes[:5])) + (", ..." if len(model.classes) > 5 else "")
        raise StreambpError(f"{source.files[0]}: label column {label!r} holds {t} values, but the model's classes "
                            f"are {model.label_type} ({shown}). Give the column of the labels the model was "
                            "trained on (--label).")


def probabilities(model, X, idx, probs, ws):
    """probs[n, K] <- the model's class probabilities for X[n, D] and idx[n, C], ws.rows rows per kernel call."""
    for s in range(0, X.shape[0], ws.rows):
        network_predict_proba(probs[s:s + ws.rows], ws.acts, model.theta, model.layout, X[s:s + ws.rows],
                              idx[s:s + ws.rows])


def evaluation_cache(setting, source_options, model, source, label, split, skip_bad, rows, passes):
    """The cache.StreamCache of the rows evaluate() reads with these arguments (see cache.open_cache)."""
    from .cache import open_cache

    encoder = LabelEncoder(label, model.classes, model.label_type)
    return open_cache(setting, source, source_options, model_spec(model, source), encoder, model.theta.dtype,
                      split, skip_bad, rows, passes, "the validation rows")


def evaluate(model, source, label, chunk_rows=16384, split=None, bad_rows=None, cache=None):
    """Accuracy, log loss, confusion matrix, per-class precision and recall over a labelled source.

    Rows whose label the model never saw are counted in unknown_labels and left out of the metrics.
    split = (fraction, True) evaluates only the validation side of a hash split, and bad_rows drops rows
    with null, NaN or inf values instead of stopping (see stream.chunks); cache (from evaluation_cache) holds
    the decoded rows.
    """
    check_unique_names(source)
    require_column(source, label, "label")
    check_label_type(model, source, label)
    spec = model_spec(model, source)
    check_schemas(source, [label])
    K = model.sizes[-1]
    encoder = LabelEncoder(label, model.classes, model.label_type)
    ws = Workspace(model.sizes, 1024, model.theta.dtype)
    probs = np.empty((chunk_rows, K), dtype=model.theta.dtype)
    confusion = np.zeros((K, K), dtype=np.int64)
    log_loss = 0.0
    unknown = 0
    for X, idx, y in prefetched(chunks(source, spec, encoder, chunk_rows, model.theta.dtype, split=split,
                                  bad_rows=bad_rows, cache=cache)):
        p = probs[:X.shape[0]]
        probabilities(model, X, idx, p, ws)
        known = y >= 0
        unknown += int((~known).sum())
        p, y = p[known], y[known]
        pred = p.argmax(axis=1)
        confusion += np.bincount(y * K + pred, minlength=K * K).reshape(K, K)
        log_loss -= np.log(np.maximum(p[np.arange(len(y)), y].astype(np.float64), 1e-300)).sum()
    n = int(confusion.sum())
    if n == 0:
        raise StreambpError(f"{source.files[0]} has no rows with a label the model knows "
                            f"({unknown} rows with unknown labels).")
    tp = np.diag(confusion)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(confusion.sum(axis=0) > 0, tp / confusion.sum(axis=0), 0.0)
        recall = np.where(confusion.sum(axis=1) > 0, tp / confusion.sum(axis=1), 0.0)
    return {
        "accuracy": float(tp.sum() / n),
        "log_loss": float(log_loss / n),
        "n_rows": n,
        "unknown_labels": unknown,
        "classes": model.classes,
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "confusion_matrix": confusion.tolist(),
    }


def predict_to_parquet(model, source, out, id_column=None):
    """Write the predicted label and one probability column per class to Parquet, atomically."""
    current().protect(source.files, "the data")
    current().check(out, "--out")
    spec = model_spec(model, source)
    names = ["prediction"] + [f"prob_{c}" for c in model.classes]
    if id_column:
        require_column(source, id_column, "id")
        if id_column in names:
            raise StreambpError(f"--id {id_column!r} has the name of an output column (the output has "
                                f"{', '.join(names[:6])}{', ...' if len(names) > 6 else ''}); the file would "
                                "have two columns of that name. Rename the column in the data, or predict "
                                "without --id.")
    decoder = BatchDecoder(spec, model.theta.dtype)
    ws = Workspace(model.sizes, 1024, model.theta.dtype)
    X = np.empty((READ_ROWS, spec.width), dtype=model.theta.dtype)
    idx = np.empty((READ_ROWS, len(spec.categorical)), dtype=np.int32)
    probs = np.empty((READ_ROWS, model.sizes[-1]), dtype=model.theta.dtype)
    classes = pa.array(model.classes, type=pa.type_for_alias(model.label_type))
    rows = 0
    columns = spec.columns + ([id_column] if id_column and id_column not in spec.columns else [])
    with atomic_path(out, "--out") as tmp:
        writer = None
        try:
            for f, row0, batch in source.batches(columns, READ_ROWS):
                n = batch.num_rows
                decoder.fill(X[:n], decoder.matrix_source(f, row0, batch), 0, f, row0)
                decoder.slots(idx[:n], batch)
                probabilities(model, X[:n], idx[:n], probs[:n], ws)
                arrays = [classes.take(pa.array(probs[:n].argmax(axis=1)))]
                arrays += [pa.array(probs[:n, k]) for k in range(probs.shape[1])]
                table = pa.Table.from_arrays(arrays, names=names)
                if id_column:
                    table = table.add_column(0, id_column, batch.column(id_column))
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                rows += n
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise StreambpError(f"{source.files[0]} has no rows to predict.")
    return rows
