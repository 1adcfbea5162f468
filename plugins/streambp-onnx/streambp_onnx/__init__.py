"""`streambp export-onnx MODEL OUT.onnx`: a streambp model, with its preprocessing, as an ONNX graph for
onnxruntime and the like (the graph itself: graph.py; the inputs a user feeds: README.md).

Column k of "probabilities" is the class classes[k]. The model's metadata goes into the ONNX file's
metadata_props, each value a JSON text: "classes", "features", "label_type", "input_column", "sizes",
"standardized", "inputs" (the graph's input names), "columns" (the raw columns it reads, in order),
"per_column" (whether it takes one input per column), "categorical" (the categorical columns, each with
a "NAME missing" input), and "streambp_version" (plain text).
"""
import json
import os
from typing import Annotated

import typer

import streambp
from streambp import hookimpl
from streambp.atomic import atomic_path
from streambp.errors import StreambpError

__version__ = "0.1.0"

DEFAULT_OPSET = 17
MIN_OPSET = 13  # Softmax on one axis, ReduceSum with its axes as an input
ML_OPSET = 2  # ai.onnx.ml LabelEncoder with string and int64 keys


def _plain(value):
    """A numpy scalar (a class label of a model built in Python) as a plain Python value, for JSON."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_onnx(model, opset=DEFAULT_OPSET):
    """The onnx.ModelProto computing model.predict_proba: inputs as graph.py describes them, output
    "probabilities" float32 [N, K]. Raises StreambpError for a model it cannot express (a hashed column)."""
    # Imported here: every installed plugin is imported whenever `streambp` starts, and onnx takes a
    # tenth of a second to import, which `streambp fit` should not pay.
    import onnx
    from onnx import helper

    from .graph import build_graph

    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise StreambpError(f"--opset must be between {MIN_OPSET} and {newest} (this onnx package's newest), "
                            f"got {opset}.")
    graph, per_column = build_graph(model)
    opsets = [helper.make_opsetid("", opset)]
    if any(n.domain == "ai.onnx.ml" for n in graph.node):
        opsets.append(helper.make_opsetid("ai.onnx.ml", ML_OPSET))
    sizes = "-".join(map(str, model.sizes))
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="streambp-onnx",
                              producer_version=__version__,
                              doc_string=f"streambp {sizes} network: class probabilities")
    proto.ir_version = helper.find_min_ir_version_for(opsets)  # readable by the oldest runtime that can
    spec = model.spec
    columns = [spec.input_column] if spec.input_column else [c.name for c in spec.numeric + spec.categorical]
    meta = {"classes": model.classes, "features": model.features, "label_type": model.label_type,
            "input_column": model.input_column, "sizes": model.sizes, "standardized": model.mean is not None,
            "inputs": [i.name for i in graph.input], "columns": columns, "per_column": per_column,
            "categorical": [c.name for c in spec.categorical]}
    helper.set_model_props(proto, {**{k: json.dumps(v, default=_plain) for k, v in meta.items()},
                                   "streambp_version": streambp.__version__})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export(model_path, out_path, opset=DEFAULT_OPSET):
    """Write the ONNX graph of the model file model_path to out_path, atomically; return the model."""
    model = streambp.load(model_path)
    data = to_onnx(model, opset).SerializeToString()
    with atomic_path(out_path) as tmp:  # a temporary file beside out_path, renamed over it when complete
        with open(tmp, "wb") as f:
            f.write(data)
    return model


def export_onnx(
    model: Annotated[str, typer.Argument(help="Model file written by `streambp fit`.")],
    out: Annotated[str, typer.Argument(help="ONNX file to write (replaced atomically).")],
    opset: Annotated[int, typer.Option(help="ONNX opset version.")] = DEFAULT_OPSET,
):
    """Export MODEL, with its preprocessing, as an ONNX graph: one input per column (categorical columns with
    a "NAME missing" mask) or, without categorical columns, one matrix X; output probabilities [N, K]."""
    from .graph import matrix_columns, takes_columns

    m = export(model, out, opset)
    spec = m.spec
    if takes_columns(spec):
        inputs = (f"inputs: one per column ({_some(c.name for c in spec.numeric + spec.categorical)}), and a "
                  "bool 'NAME missing' input per categorical column")
    elif spec.input_column:
        inputs = f"input X [N, {spec.width}] (the values of list column {spec.input_column})"
    else:
        columns = matrix_columns(spec)
        inputs = f"input X [N, {len(columns)}] (columns {_some(columns)}; NaN where missing)"
    print(f"Wrote {os.fspath(out)}: {'-'.join(map(str, m.sizes))} network, {inputs}, output "
          f"probabilities [N, {m.sizes[-1]}] for classes {m.classes}.")


def _some(names, shown=8):
    """Up to `shown` names, then how many more."""
    names = list(names)
    more = f", ... ({len(names)} in all)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


@hookimpl
def register_commands(app):
    # Imported here, not at the top: streambp.cli calls this hook while it is being imported.
    from streambp.cli import user_errors  # a StreambpError: one "Error:" paragraph, exit 2, no traceback

    app.command("export-onnx")(user_errors(export_onnx))
