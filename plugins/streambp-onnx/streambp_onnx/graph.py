"""A streambp model as an ONNX graph: its preprocessing (fills, missing indicators, standardisation,
category lookups) and its network, all as ONNX operators, float32 throughout.

Dimension key: N rows, Dn numeric columns, D numeric inputs (Dn, then one missing indicator per column that
had nulls in training), C categorical columns, V slots, H1 units of the first layer, K classes.

Inputs: a model with categorical columns takes one input per column, named as the column: numeric columns
float [N, 1] (NaN where missing), categorical ones [N, 1] of their type (string, bool, an integer type), each
with a bool [N, 1] input "NAME missing" (true where the value is null; the value beside it is then ignored).
Other models take one float input "X": [N, Dn] numeric columns (NaN where missing), or [N, D] of a list
column's values.
"""
import numpy as np

from streambp.errors import StreambpError
from streambp.features import MISSING, OTHER, TRACK_LIMIT

OUTPUT = "probabilities"
INTERNAL = "streambp/"  # prefix of every other value in the graph, so that no column name can clash
CODE_TYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


def mask_name(column):
    return f"{column} missing"


def takes_columns(spec):
    """Whether the graph takes one input per column (else one matrix "X")."""
    return bool(spec.categorical)


def matrix_columns(spec):
    """The columns of the matrix input X, in order."""
    return spec.features if spec.input_column else [c.name for c in spec.numeric]


class _Builder:
    """Nodes and initializers of a graph under construction."""

    def __init__(self):
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.initializers, self.inputs = [], [], []

    def input(self, name, elem_type, shape):
        self.inputs.append(self.helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def constant(self, name, array, dtype=np.float32):
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(array, dtype=dtype),
                                                              INTERNAL + name))
        return INTERNAL + name

    def node(self, op, inputs, output, domain="", **attributes):
        name = output if output == OUTPUT else INTERNAL + output
        self.nodes.append(self.helper.make_node(op, inputs, [name], name=name, domain=domain, **attributes))
        return name


def refuse_hashed(spec):
    """A hashed categorical column's slot is a 64-bit FNV-1a hash, which no ONNX operator computes."""
    for c in spec.categorical:
        if c.values is None:
            fix = (f"it had more than {TRACK_LIMIT:,} distinct values, which streambp always hashes: leave it out "
                   f"with --ignore {c.name}, or map its values to fewer codes, and retrain"
                   if c.distinct > TRACK_LIMIT else
                   f"retrain without --hash-buckets, with --max-categories {c.distinct} or more, so that "
                   "the column gets a vocabulary (which export-onnx turns into an ai.onnx.ml LabelEncoder)")
            raise StreambpError(f"Categorical column {c.name!r} of the model is hashed into {c.buckets:,} buckets "
                                "by a 64-bit FNV-1a hash, which standard ONNX operators cannot compute, so the "
                                f"model cannot be exported to ONNX. To export it, {fix}.")


def categorical_slot(g, c):
    """The slot [N, 1] int64 of column c (offset included): its value looked up in the vocabulary
    (unseen: OTHER), or MISSING where its mask input is true."""
    from onnx import TensorProto, helper

    if c.value_type in ("string", "large_string"):
        value = g.input(c.name, TensorProto.STRING, ["N", 1])
        keys = {"keys_strings": list(c.values)}
    elif c.value_type in CODE_TYPES:
        value = g.input(c.name, helper.np_dtype_to_tensor_dtype(np.dtype(c.value_type)), ["N", 1])
        if c.value_type != "int64":
            value = g.node("Cast", [value], f"{c.name}/int64", to=TensorProto.INT64)
        # uint64 codes above 2^63 wrap as Cast wraps them
        keys = {"keys_int64s": np.asarray(c.values, dtype=c.value_type).astype(np.int64).tolist()}
    else:
        raise StreambpError(f"Categorical column {c.name!r} of the model holds {c.value_type} values; "
                            "export-onnx handles string, boolean and integer categories. Retrain with the "
                            "column cast to one of these.")
    missing = g.input(mask_name(c.name), TensorProto.BOOL, ["N", 1])
    if c.values:
        found = g.node("LabelEncoder", [value], f"{c.name}/code", domain="ai.onnx.ml",
                       values_int64s=[c.offset + 2 + i for i in range(len(c.values))],
                       default_int64=c.offset + OTHER, **keys)
    else:  # every value was rarer than --min-frequency: all are "other"
        found = g.constant(f"{c.name}/other", [[c.offset + OTHER]], np.int64)
    return g.node("Where", [missing, g.constant(f"{c.name}/missing", c.offset + MISSING, np.int64), found],
                  f"{c.name}/slot")


def numeric_inputs(g, spec, per_column):
    """The standardised numeric inputs [N, D], or None when D is 0."""
    from onnx import TensorProto

    if not spec.input_column and not spec.numeric:
        return None
    if per_column:
        columns = [g.input(c.name, TensorProto.FLOAT, ["N", 1]) for c in spec.numeric]
        x = columns[0] if len(columns) == 1 else g.node("Concat", columns, "numeric", axis=1)
    else:
        x = g.input("X", TensorProto.FLOAT, ["N", len(matrix_columns(spec))])
    fills = [np.nan if c.fill is None else c.fill for c in spec.numeric]
    if not spec.input_column and not np.isnan(fills).all():  # models before format 3 have no fills
        nan = g.node("IsNaN", [x], "nan")
        filled = g.node("Where", [nan, g.constant("fill", fills), x], "filled")  # a NaN fill leaves NaN
        x = filled
        if spec.indicators:
            flags = g.node("Cast", [nan], "nan/float", to=TensorProto.FLOAT)
            which = [i for i, c in enumerate(spec.numeric) if c.indicator]
            indicators = g.node("Gather", [flags, g.constant("indicator_columns", which, np.int64)],
                                "indicators", axis=1)
            x = g.node("Concat", [filled, indicators], "inputs", axis=1)
    if spec.mean is not None:
        x = g.node("Sub", [x, g.constant("mean", spec.mean)], "centered")
        x = g.node("Mul", [x, g.constant("inv_std", spec.inv_std)], "standardized")
    return x


def check_names(g):
    """Input names are column names: they must differ from each other and from the output."""
    seen = set()
    for i in g.inputs:
        if i.name in seen or i.name == OUTPUT or i.name.startswith(INTERNAL):
            raise StreambpError(f"The ONNX graph would have two values named {i.name!r} (each column is an input "
                                f"named as the column, each categorical column adds a 'NAME missing' input, the "
                                f"output is {OUTPUT!r}, and internal values start with {INTERNAL!r}). Rename "
                                "the column in the data and retrain.")
        seen.add(i.name)


def build_graph(model):
    """(the onnx.GraphProto computing model.predict_proba, whether it takes one input per column)."""
    from onnx import TensorProto, helper

    spec = model.spec
    refuse_hashed(spec)
    per_column = takes_columns(spec)
    g = _Builder()
    x = numeric_inputs(g, spec, per_column)
    layers = model.layers
    for n, (W, b) in enumerate(layers, start=1):
        if n > 1 or x is not None:
            x = g.node("Gemm", [x, g.constant(f"W{n}", W), g.constant(f"b{n}", b)], f"z{n}", transB=1)
        if n == 1 and spec.categorical:  # z1 += sum over the columns of E[slot]
            slots = [categorical_slot(g, c) for c in spec.categorical]
            idx = slots[0] if len(slots) == 1 else g.node("Concat", slots, "slots", axis=1)  # [N, C]
            rows = g.node("Gather", [g.constant("table", model.table), idx], "embedded", axis=0)  # [N, C, H1]
            bag = g.node("ReduceSum", [rows, g.constant("bag_axis", [1], np.int64)], "bag", keepdims=0)
            x = g.node("Add", [x, bag] if x is not None else [bag, g.constant("b1", b)], "z1/bag")
        if n < len(layers):
            x = g.node("Sigmoid", [x], f"a{n}")
    g.node("Softmax", [x], OUTPUT, axis=1)
    check_names(g)
    graph = helper.make_graph(g.nodes, "streambp", g.inputs,
                              [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", model.sizes[-1]])],
                              g.initializers)
    return graph, per_column
