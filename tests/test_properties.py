"""Property-based layer of the adversarial corpus (issue 13): Hypothesis draws tiny tables (1-60 rows) with
random schemas (every integer width, floats with NaN/inf/nulls, booleans, strings with empty and unicode
values, dictionaries, timestamps, dates, binary, decimals, lists, all-null columns, look-alike and duplicate
names), a label of 1-4 classes of several types with nulls, a file format (Parquet, CSV, Arrow IPC) and fit's
data options, and checks the promises of `fit`, `predict` and `evaluate` on them:

- fit exits 0, 2, or 3 for divergence; never 1, never a traceback;
- exit 2 or 3: stderr is one paragraph starting with "Error:", naming the column when it is about one, and
  fit leaves no model file;
- exit 0: the model loads; predict on the same file and on a second table of the same schema with unseen
  categories and nulls (its columns maybe reordered) writes one row per input row, finite probabilities
  summing to 1 and the class of the largest one; evaluate on the same file agrees with those predictions;
  a second table with a column of another type, or read anew from CSV, may instead be refused (exit 2);
- datasets of two files (one maybe empty, one maybe with a column of another type), --features, and
  predict --id (a feature, the label, a missing column, "prediction"): the same, with the id column
  carried through unchanged;
- no input or earlier output changes (sha256 of every file before and after each command).

The CLI runs in-process (typer's CliRunner) for speed; test_real_process_examples runs a few of the same
checks through a real `python -m streambp` process.
"""
import decimal
import math
import os
import re
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import checksums
import streambp

# STREAMBP_EXAMPLES=N: N examples per property instead of the few that keep this file near a minute
# (conftest.py: STREAMBP_HYPOTHESIS=explore draws new examples each run).
SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck))

INTEGERS = {"int8": pa.int8(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
            "uint8": pa.uint8(), "uint16": pa.uint16(), "uint32": pa.uint32(), "uint64": pa.uint64()}
KINDS = [*INTEGERS, "float32", "float64", "bool", "string", "large_string", "dictionary", "timestamp",
         "timestamp_tz", "date32", "binary", "decimal", "list", "null", "all_null_float", "all_null_string"]
# Look-alike names: case, spaces, dots, digits, unicode; a few are drawn twice on purpose (duplicates).
NAMES = ["a", "A", "a ", " a", "a.b", "x0", "x_0", "1", "é", "ü名", "label_", "Label", "col-1", "b"]
LABEL_NAMES = ["label", "y", "ラベル"]
LABEL_KINDS = ["int64", "int8", "uint16", "string", "large_string", "dictionary", "bool", "float64"]


@dataclass
class Column:
    name: str
    kind: str
    array: pa.Array


# ------------------------------------------------------------------------------------------ strategies


def sometimes(draw, p=4):
    """True about once in p draws (Hypothesis favours small integers, and shrinks to False)."""
    return draw(st.sampled_from([False] * (p - 1) + [True]))


def count_option(draw, option, usual, wrong):
    """[option, value]: mostly a usual value, once in 8 a value the option refuses."""
    return [option, str(draw(st.sampled_from(wrong if sometimes(draw, 8) else usual)))]


def nullable(values, null_rate):
    """A strategy of one cell: a value, or None with the column's null rate (0, some, or often)."""
    if null_rate == 0:
        return values
    return st.one_of(values, st.none()) if null_rate == 1 else st.one_of(values, st.none(), st.none(), st.none())


def text_values(unseen):
    base = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=4)
    base = st.one_of(st.sampled_from(["", "red", "green", "blue", "ß", "日本", " ", "1", "0"]), base)
    return st.builds(lambda s: "unseen-" + s, base) if unseen else base


@st.composite
def cells(draw, kind, n, unseen=False):
    """(values, arrow type) of a column of `kind` with n rows. unseen: values the training table did not
    draw (new categories, moderate numbers), nulls allowed but no NaN/inf, and list rows always valid."""
    null_rate = draw(st.sampled_from([0, 1, 2]))
    if unseen and kind == "list":
        null_rate = 0
    if kind in INTEGERS:
        t = INTEGERS[kind]
        info = np.iinfo(t.to_pandas_dtype())
        lo, hi = (0, 9) if unseen else (int(info.min), int(info.max))
        small = st.integers(max(lo, -3) if unseen else max(lo, -5), min(hi, 5))
        values = st.one_of(small, small, st.integers(lo, hi)) if not unseen else st.integers(50, 99)
        return draw(st.lists(nullable(values, null_rate), min_size=n, max_size=n)), t
    if kind in ("float32", "float64"):
        width = 32 if kind == "float32" else 64
        finite = st.floats(-1e3, 1e3, width=width) if unseen else \
            st.one_of(st.floats(-10, 10, width=width), st.floats(allow_nan=False, allow_infinity=False, width=width))
        special = st.sampled_from([math.nan] if unseen else [math.nan, math.inf, -math.inf])
        bad = draw(st.booleans())
        values = st.one_of(finite, finite, special) if bad else finite
        return draw(st.lists(nullable(values, null_rate), min_size=n, max_size=n)), pa.float32() \
            if width == 32 else pa.float64()
    if kind == "bool":
        return draw(st.lists(nullable(st.booleans(), null_rate), min_size=n, max_size=n)), pa.bool_()
    if kind in ("string", "large_string", "dictionary"):
        values = draw(st.lists(nullable(text_values(unseen), null_rate), min_size=n, max_size=n))
        t = {"large_string": pa.large_string(), "dictionary": pa.dictionary(pa.int32(), pa.string())}
        return values, t.get(kind, pa.string())
    if kind in ("timestamp", "timestamp_tz"):
        unit = draw(st.sampled_from(["s", "ms", "us", "ns"]))
        t = pa.timestamp(unit, tz="UTC" if kind == "timestamp_tz" else None)
        values = st.integers(-10**12, 10**12) if unit != "s" else st.integers(-10**10, 10**10)
        return draw(st.lists(nullable(values, null_rate), min_size=n, max_size=n)), t
    if kind == "date32":
        return draw(st.lists(nullable(st.integers(-10**5, 10**5), null_rate), min_size=n, max_size=n)), pa.date32()
    if kind == "binary":
        return draw(st.lists(nullable(st.binary(max_size=4), null_rate), min_size=n, max_size=n)), pa.binary()
    if kind == "decimal":
        values = st.decimals(-10**4, 10**4, places=2, allow_nan=False, allow_infinity=False)
        return draw(st.lists(nullable(values, null_rate), min_size=n, max_size=n)), pa.decimal128(8, 2)
    if kind == "list":
        good = st.lists(st.floats(-5, 5, width=32), min_size=3, max_size=3)
        row = good if unseen or not draw(st.booleans()) else \
            st.one_of(good, good, st.lists(st.one_of(st.floats(-5, 5), st.none()), max_size=4))
        return draw(st.lists(nullable(row, null_rate), min_size=n, max_size=n)), pa.list_(pa.float32())
    t = {"null": pa.null(), "all_null_float": pa.float64(), "all_null_string": pa.string()}[kind]
    return [None] * n, t


def to_array(values, t):
    if pa.types.is_dictionary(t):
        return pa.array(values, type=pa.string()).dictionary_encode()
    if pa.types.is_decimal(t):
        return pa.array([None if v is None else decimal.Decimal(v) for v in values], type=t)
    return pa.array(values, type=t)


@st.composite
def label_cells(draw, kind, n, classes, unseen=False):
    """The label column: values from `classes` (1-4 of them), some nulls; unseen adds values outside them."""
    pool = list(classes) + (["unseen"] if unseen and kind in ("string", "large_string", "dictionary") else [])
    null_rate = draw(st.sampled_from([0, 0, 0, 1]))
    values = draw(st.lists(nullable(st.sampled_from(pool), null_rate), min_size=n, max_size=n))
    if not sometimes(draw, 8):  # mostly every class present (not only one class, which fit refuses)
        values[:len(pool)] = pool[:n]
    t = {"int64": pa.int64(), "int8": pa.int8(), "uint16": pa.uint16(), "string": pa.string(),
         "large_string": pa.large_string(), "dictionary": pa.dictionary(pa.int32(), pa.string()),
         "bool": pa.bool_(), "float64": pa.float64()}[kind]
    return to_array(values, t)


def class_pool(kind):
    if kind in ("string", "large_string", "dictionary"):
        return st.sampled_from(["cat", "dog", "", "鳥", "cat ", "Cat"])
    if kind == "bool":
        return st.booleans()
    if kind == "float64":
        return st.sampled_from([0.0, 1.0, 2.5, -1.0, math.nan])
    return st.integers(0, 120)


@st.composite
def tables(draw):
    """A training table, a second table of the same schema (unseen values), the label name and the format."""
    n = draw(st.one_of(st.integers(1, 60), st.integers(8, 60)))
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1 if sometimes(draw, 8) else 2, max_size=5))
    names = draw(st.lists(st.sampled_from(NAMES), min_size=len(kinds), max_size=len(kinds),
                          unique=not sometimes(draw, 10)))
    label = draw(st.sampled_from(LABEL_NAMES))
    label_kind = draw(st.sampled_from(LABEL_KINDS))
    k = min(draw(st.sampled_from([1, 2, 2, 3, 4])), 2 if label_kind == "bool" else 4)
    classes = draw(st.lists(class_pool(label_kind), min_size=k, max_size=k, unique_by=repr))
    fmt = draw(st.sampled_from(["parquet", "csv", "arrow"]))
    if fmt == "csv":  # a CSV file holds no list column
        kinds = [k if k != "list" else "float64" for k in kinds]
    n2 = draw(st.integers(1, 20))
    kinds2 = list(kinds)
    if sometimes(draw):  # a column of another type in the second table
        kinds2[draw(st.integers(0, len(kinds) - 1))] = draw(st.sampled_from([k for k in KINDS if k != "list"]))
    train, second = [], []
    for name, kind, kind2 in zip(names, kinds, kinds2):
        train.append(Column(name, kind, to_array(*draw(cells(kind, n)))))
        second.append(Column(name, kind2, to_array(*draw(cells(kind2, n2, unseen=True)))))
    position = draw(st.integers(0, len(kinds)))
    train.insert(position, Column(label, label_kind, draw(label_cells(label_kind, n, classes))))
    second.insert(position, Column(label, label_kind, draw(label_cells(label_kind, n2, classes, unseen=True))))
    if draw(st.booleans()):  # columns in another order
        second = draw(st.permutations(second))
    return train, second, label, fmt


@st.composite
def fit_options(draw, columns, label):
    """fit's options: network and stream sizes, bad rows, column roles (existing or missing columns),
    vocabulary and standardisation choices, a validation split."""
    names = [c.name for c in columns if c.name != label] + ["missing_col"]
    args = ["--threads", "1", "--hidden", draw(st.sampled_from(["0", "3", "2,2"])),
            "--batch-size", str(draw(st.sampled_from([1, 4, 16, 64]))), "--epochs", str(draw(st.integers(1, 2)))]
    if label != "label":
        args += ["--label", label]
    if draw(st.booleans()):
        args += ["--on-bad-rows", "skip"]
    for option in ("--ignore", "--categorical", "--numeric"):
        if sometimes(draw, 6):
            args += [option, ",".join(draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True)))]
    if sometimes(draw):
        args += count_option(draw, "--hash-buckets", [0, 2, 7], [1, -1])
    if sometimes(draw):
        args += count_option(draw, "--max-categories", [1, 2, 3], [0])
    if sometimes(draw):
        args += count_option(draw, "--min-frequency", [1, 2, 3], [0])
    if draw(st.booleans()):
        args += ["--no-standardize"]
    if sometimes(draw):
        args += ["--val-fraction", str(draw(st.sampled_from([0.3, 0.5])))]
    return args


# ------------------------------------------------------------------------------------------ files and runs


def write_table(columns, path, fmt):
    """Write the columns (duplicate names kept) as fmt; False when pyarrow cannot write such a file."""
    table = pa.Table.from_arrays([c.array for c in columns], names=[c.name for c in columns])
    try:
        if fmt == "parquet":
            pq.write_table(table, path)
        elif fmt == "csv":
            plain = [c.array.cast(pa.string()) if pa.types.is_dictionary(c.array.type) else c.array
                     for c in columns]
            pcsv.write_csv(pa.Table.from_arrays(plain, names=table.column_names), path)
        else:
            feather.write_feather(table, path)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    detail: str  # the traceback of an exception that escaped the command, if any


def in_process(args):
    from streambp.cli import app

    r = CliRunner().invoke(app, [str(a) for a in args])
    detail = ""
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        detail = "".join(traceback.format_exception(*r.exc_info))
    return Outcome(r.exit_code, r.stdout, r.stderr, detail)


def real_process(args):
    p = subprocess.run([sys.executable, "-m", "streambp", *map(str, args)], capture_output=True, text=True,
                       timeout=300)
    return Outcome(p.returncode, p.stdout, p.stderr, "")


def command(run, directory, args, allowed, names):
    """Run a command; assert its exit code is allowed, no traceback, that an error is one paragraph starting
    with "Error:" that names a column when it speaks of one (names: the columns the command could mean), and
    that no file under directory changed. Returns the Outcome."""
    before = checksums(directory)
    r = run(args)
    shown = f"streambp {' '.join(map(str, args))}\nexit {r.code}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}\n{r.detail}"
    assert r.code in allowed, shown
    assert not r.detail and "Traceback" not in r.stdout + r.stderr, shown
    if r.code != 0:
        message = r.stderr.strip()
        assert message.startswith("Error:") and message.count("Error:") == 1, shown
        assert "\n\n" not in message, shown
        if r.code == 3:
            assert "diverged" in message, shown
        if re.search(r"\bcolumns?\b|\bfeatures?\b", message):
            assert any(f"'{n}" in message or f'"{n}' in message for n in names), shown
    after = checksums(directory)
    assert {k: after.get(k) for k in before} == before, f"an input or an earlier output changed\n{shown}"
    return r


def check_predictions(path, model, rows):
    """One row per input row, finite probabilities summing to 1, the prediction the most probable class."""
    out = pq.read_table(path)
    assert out.num_rows == rows
    assert out.column_names == ["prediction"] + [f"prob_{c}" for c in model.classes]
    probs = np.column_stack([out.column(i).to_numpy() for i in range(1, out.num_columns)]).astype(np.float64)
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    predicted = out.column("prediction").to_pylist()
    assert all(p in model.classes for p in predicted)
    chosen = probs.argmax(axis=1)
    for p, k, row in zip(predicted, chosen, probs):
        assert row[model.classes.index(p)] == row[k]  # a tie may pick either
    return predicted


def check_evaluation(outcome, predicted, labels, model):
    """evaluate on the file the predictions came from: the same rows, the same correct ones."""
    import json

    m = json.loads(outcome.stdout)
    known = [(p, y) for p, y in zip(predicted, labels) if y in model.classes]
    assert m["n_rows"] == len(known) and m["unknown_labels"] == len(labels) - len(known)
    assert np.isclose(m["accuracy"], sum(p == y for p, y in known) / len(known))


def column_values(path, name):
    """A column's values as the source reads them, NaN as None (a CSV file reads an empty string cell as "")."""
    from streambp.registry import open_source

    values = [v for _, _, b in open_source(path).batches([name], 1 << 16) for v in plain(b.column(0)).to_pylist()]
    return [None if v is None or v != v else v for v in values]


def plain(arr):
    return arr.dictionary_decode() if pa.types.is_dictionary(arr.type) else arr


def check_everything(run, columns, second, label, fmt, options):
    """The properties of the module docstring for one drawn case; run: in_process or real_process."""
    with tempfile.TemporaryDirectory() as d:
        data, other = os.path.join(d, f"train.{fmt}"), os.path.join(d, f"second.{fmt}")
        if not (write_table(columns, data, fmt) and write_table(second, other, fmt)):
            return
        named = [a for option, a in zip(options, options[1:]) if option in ("--ignore", "--categorical", "--numeric")]
        names = [c.name for c in columns] + [n for a in named for n in a.split(",")] + [label]
        model_path = os.path.join(d, "model.npz")
        fit = command(run, d, ["fit", data, "--out", model_path, *options], {0, 2, 3}, names)
        if run is in_process:  # --hypothesis-show-statistics tells how often fit succeeded, and why not
            event(f"fit exit {fit.code}" + (f": {fit.stderr.split(':', 2)[-1][:40]}" if fit.code else ""))
        if fit.code != 0:
            assert not os.path.exists(model_path), "a failed fit left a model file"
            return
        model = streambp.load(model_path)
        skip = "skip" in options
        # The same file: every row fit kept is predictable; with --on-bad-rows skip, a row fit dropped may be
        # refused (exit 2, naming it).
        p1 = os.path.join(d, "p1.parquet")
        r = command(run, d, ["predict", model_path, data, "--out", p1], {0, 2} if skip else {0}, names)
        predicted = check_predictions(p1, model, len(columns[0].array)) if r.code == 0 else None
        r = command(run, d, ["evaluate", model_path, data, "--json", "--label", label],
                    {0, 2} if skip or predicted is None else {0}, names)
        if r.code == 0 and predicted is not None:
            check_evaluation(r, predicted, column_values(data, label), model)
        # A second table: unseen categories, nulls, its columns maybe in another order. A CSV reader infers its
        # types anew (an all-null column is typed null, digits become integers), and a column may have another
        # type: such a table may be refused, naming the column.
        p2 = os.path.join(d, "p2.parquet")
        drifted = sorted((c.name, c.kind) for c in columns) != sorted((c.name, c.kind) for c in second)
        r = command(run, d, ["predict", model_path, other, "--out", p2], {0, 2} if fmt == "csv" or drifted else {0},
                    names)
        if r.code == 0:
            check_predictions(p2, model, len(second[0].array))
        command(run, d, ["evaluate", model_path, other, "--label", label], {0, 2}, names)


@st.composite
def cases(draw):
    columns, second, label, fmt = draw(tables())
    return columns, second, label, fmt, draw(fit_options(columns, label))


@settings(max_examples=int(os.environ.get("STREAMBP_EXAMPLES", 150)), **SETTINGS)
@given(cases())
def test_fit_predict_evaluate_on_random_tables(case):
    check_everything(in_process, *case)


@settings(max_examples=int(os.environ.get("STREAMBP_EXAMPLES", 60)), **SETTINGS)
@given(st.data())
def test_one_kind_of_column_with_its_options(data):
    """Each kind of column alone beside a two-class label (the schema's only feature), so that every kind
    reaches the stream and the model rather than only an error about another column."""
    kind = data.draw(st.sampled_from(KINDS))
    n = data.draw(st.integers(2, 40))
    fmt = data.draw(st.sampled_from(["parquet", "arrow"] + (["csv"] if kind != "list" else [])))
    columns = [Column("f", kind, to_array(*data.draw(cells(kind, n)))),
               Column("label", "int64", pa.array([i % 2 for i in range(n)], type=pa.int64()))]
    second = [Column("f", kind, to_array(*data.draw(cells(kind, 5, unseen=True)))),
              Column("label", "int64", pa.array([0, 1, 1, 0, 2], type=pa.int64()))]
    check_everything(in_process, columns, second, "label", fmt, data.draw(fit_options(columns, "label")))


@st.composite
def datasets(draw):
    """A training table split over two files of a directory (one may be empty), the second file's copy of one
    column sometimes of another type; fit's options, sometimes --features; predict's --id column."""
    columns, _, label, fmt = draw(tables())
    options = draw(fit_options(columns, label))
    names = [c.name for c in columns]
    if sometimes(draw):
        options += ["--features", ",".join(draw(st.lists(st.sampled_from(names + ["missing_col"]), min_size=1,
                                                          max_size=3, unique=True)))]
    cut = draw(st.integers(0, len(columns[0].array)))
    drift = draw(st.sampled_from([None] * 3 + names))
    id_column = draw(st.sampled_from([None, "prediction", "missing_col"] + names))
    return columns, label, fmt, options, cut, drift, id_column


@settings(max_examples=int(os.environ.get("STREAMBP_EXAMPLES", 60)), **SETTINGS)
@given(datasets())
def test_two_file_datasets_and_predict_ids(case):
    """fit on a directory of two files; predict with --id carries the id column through unchanged, and is
    refused (exit 2, naming it) only for an id the data lacks, holds twice, or an output column's name."""
    columns, label, fmt, options, cut, drift, id_column = case
    with tempfile.TemporaryDirectory() as d:
        data = os.path.join(d, "data")
        os.mkdir(data)
        part2 = [Column(c.name, c.kind, c.array[cut:]) for c in columns]
        if drift is not None:  # the same column as text in the second file
            part2 = [Column(c.name, c.kind, pa.array([None if v is None else str(v) for v in c.array.to_pylist()],
                                                     type=pa.string())) if c.name == drift else c for c in part2]
        if not (write_table([Column(c.name, c.kind, c.array[:cut]) for c in columns], f"{data}/p0.{fmt}", fmt)
                and write_table(part2, f"{data}/p1.{fmt}", fmt)):
            return
        names = [c.name for c in columns] + [n for a in options[1:] for n in a.split(",")]
        model_path = os.path.join(d, "model.npz")
        fit = command(in_process, d, ["fit", data, "--out", model_path, *options], {0, 2, 3}, names)
        event(f"fit exit {fit.code}")
        if fit.code != 0:
            assert not os.path.exists(model_path), "a failed fit left a model file"
            return
        model = streambp.load(model_path)
        out = os.path.join(d, "p.parquet")
        args = ["predict", model_path, data, "--out", out] + (["--id", id_column] if id_column else [])
        r = command(in_process, d, args, {0, 2}, names + ["prediction", "missing_col"])
        unique = id_column is None or [c.name for c in columns].count(id_column) == 1
        if r.code == 2:
            assert "skip" in options or id_column in ("prediction", "missing_col") or not unique, r.stderr
            return
        written = pq.read_table(out)
        if id_column:
            assert written.column_names[0] == id_column
            got = [None if v is None or v != v else v for v in written.column(0).to_pylist()]
            assert got == column_values(data, id_column)
            written = written.drop_columns([id_column])
            pq.write_table(written, out)
        check_predictions(out, model, len(columns[0].array))


# ------------------------------------------------------------------------------------------ real processes


def example_tables():
    """A few hand-picked cases of the strategies above, run through a real process."""
    n = 24
    rng = np.random.default_rng(3)
    mixed = [Column("a", "float64", pa.array(np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)))),
             Column("é", "dictionary", pa.array(rng.choice(["x", "", "日本"], n)).dictionary_encode()),
             Column("when", "timestamp", pa.array(rng.integers(0, 10**9, n).astype("datetime64[s]"))),
             Column("blob", "binary", pa.array([b"\x00"] * n)),
             Column("label", "string", pa.array(rng.choice(["yes", "no"], n)))]
    second = [Column("a", "float64", pa.array([None, 1.0, np.nan])),
              Column("é", "dictionary", pa.array(["new", None, "x"]).dictionary_encode()),
              Column("when", "timestamp", pa.array([None, 0, 5], type=pa.timestamp("s"))),
              Column("blob", "binary", pa.array([None, b"", b"z"])),
              Column("label", "string", pa.array(["maybe", "yes", None]))]
    codes = [Column("code", "uint64", pa.array(rng.integers(0, 3, n).astype(np.uint64) + np.uint64(2**63))),
             Column("flag", "bool", pa.array(rng.random(n) < 0.5, mask=rng.random(n) < 0.3)),
             Column("label", "bool", pa.array(rng.random(n) < 0.5))]
    codes2 = [Column("code", "uint64", pa.array([1, None], type=pa.uint64())),
              Column("flag", "bool", pa.array([None, True])), Column("label", "bool", pa.array([True, False]))]
    return [
        pytest.param(mixed, second, "label", "parquet", ["--epochs", "2", "--hidden", "3"], id="mixed-parquet"),
        pytest.param(codes, codes2, "label", "arrow", ["--categorical", "code", "--no-standardize"],
                     id="uint64-codes-bool-label"),
        pytest.param(mixed, second, "label", "arrow", ["--ignore", "a,nope"], id="missing-ignore-column"),
    ]


@pytest.mark.parametrize("columns,second,label,fmt,options", example_tables())
def test_real_process_examples(columns, second, label, fmt, options):
    check_everything(real_process, columns, second, label, fmt, ["--threads", "1", *options])
