"""The built-in sources: CSV/TSV and Arrow IPC (Feather) end to end through `streambp fit`, hive-partitioned
Parquet directories, choosing a source by extension, and errors naming the file."""
import gzip
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.dataset as ds
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

import streambp
from streambp.default_plugins.sources import ArrowSource, CsvSource, ParquetSource
from streambp.errors import StreambpError
from streambp.registry import open_source

from conftest import blob_table, invoke
from test_plugins import FAST, user_error


def fit_rows(data, tmp_path, *extra, epochs=2):
    out = tmp_path / "m.npz"
    invoke("fit", data, "--out", out, "--epochs", epochs, *FAST, *extra)
    return streambp.load(out)


def learned(model, blobs):
    X, y = blobs
    return (model.predict(X) == y).mean()


def all_rows(source, columns, batch_rows=1000):
    got = list(source.batches(columns, batch_rows))
    assert all(b.num_rows <= batch_rows for _, _, b in got)
    assert all(b.schema.names == list(columns) for _, _, b in got)
    return pa.Table.from_batches([b for _, _, b in got]) if got else None


def write_csv(path, table, delimiter=",", header=True):
    options = pcsv.WriteOptions(delimiter=delimiter, include_header=header)
    pcsv.write_csv(table, str(path), write_options=options)
    return path


# ------------------------------------------------------------------------------------------ CSV


def test_csv_fit_end_to_end(tmp_path, blobs):
    path = write_csv(tmp_path / "blobs.csv", blob_table(*blobs))
    model = fit_rows(path, tmp_path, epochs=3)
    assert model.sizes == [5, 4, 3]
    assert model.features == [f"x{j}" for j in range(5)]
    assert model.classes == [0, 1, 2]
    assert model.training["rows"] == 600
    assert learned(model, blobs) > 0.8
    # evaluate and predict read CSV too.
    result = invoke("evaluate", tmp_path / "m.npz", path)
    assert "accuracy" in result.output


@pytest.mark.parametrize("name, delimiter", [("blobs.tsv", "\t"), ("blobs.csv", ";"), ("blobs.csv", "|")])
def test_csv_delimiters_detected(tmp_path, blobs, name, delimiter):
    path = write_csv(tmp_path / name, blob_table(*blobs), delimiter=delimiter)
    source = open_source(path)
    assert isinstance(source, CsvSource)
    assert source.schema.names == [f"x{j}" for j in range(5)] + ["label"]
    assert fit_rows(path, tmp_path, epochs=1).training["rows"] == 600


def test_csv_gzip(tmp_path, blobs):
    plain = write_csv(tmp_path / "plain.csv", blob_table(*blobs))
    path = tmp_path / "blobs.csv.gz"
    path.write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()
    assert isinstance(open_source(path), CsvSource)
    assert fit_rows(path, tmp_path, epochs=1).training["rows"] == 600


def test_csv_options_delimiter_and_header(tmp_path, blobs):
    path = write_csv(tmp_path / "data.txt", blob_table(*blobs), delimiter=":", header=False)
    source = open_source(path, "csv", delimiter=":", header=False)
    assert source.schema.names == [f"f{j}" for j in range(6)]
    table = all_rows(source, ["f5", "f0"])
    assert table.num_rows == 600
    np.testing.assert_array_equal(table.column("f5").to_numpy(), blobs[1])


def test_csv_string_labels_and_directory(tmp_path, blobs):
    X, y = blobs
    d = tmp_path / "csvs"
    d.mkdir()
    names = np.array(["cat", "dog", "eel"])
    for i, rows in enumerate(np.array_split(np.arange(600), 3)):
        write_csv(d / f"part-{i}.csv", blob_table(X[rows], y[rows], label_values=names))
    (d / "_SUCCESS").write_text("")
    (d / "README.md").write_text("not data")
    source = open_source(d)
    assert isinstance(source, CsvSource) and len(source.files) == 3
    model = fit_rows(d, tmp_path, epochs=2)
    assert model.classes == ["cat", "dog", "eel"] and model.label_type == "string"
    assert fit_rows(str(d / "part-*.csv"), tmp_path, epochs=1).training["rows"] == 600


def test_csv_types_fixed_by_first_block(tmp_path):
    # Blocks of 64 bytes: the first block sees only integers in "a"; a later one holds 1.5.
    lines = ["a,label"] + [f"{i},{i % 2}" for i in range(40)] + ["1.5,0"]
    path = tmp_path / "late.csv"
    path.write_text("\n".join(lines) + "\n")
    source = CsvSource(path, block_size=64)
    assert source.schema.field("a").type == pa.int64()
    with pytest.raises(StreambpError, match="late.csv") as caught:
        all_rows(source, ["a", "label"])
    assert "first block" in str(caught.value)
    assert "column 'a':" in str(caught.value)  # named, not only numbered ("CSV column #0")
    # Without the odd value, every batch has the first block's types.
    path.write_text("\n".join(lines[:-1]) + "\n")
    source = CsvSource(path, block_size=64)
    batches = [b for _, _, b in source.batches(["label", "a"], 7)]
    assert len(batches) > 3
    assert all(b.schema == batches[0].schema for b in batches)
    assert sum(b.num_rows for b in batches) == 40


def test_csv_types_consistent_across_files(tmp_path):
    (tmp_path / "csvs").mkdir()
    (tmp_path / "csvs" / "a.csv").write_text("x,label\n1,0\n2,1\n")
    (tmp_path / "csvs" / "b.csv").write_text("x,label\n0.5,0\n2.5,1\n")
    with pytest.raises(StreambpError, match="b.csv"):
        open_source(tmp_path / "csvs")
    # Empty columns in the first block are read as float64, not as the null type.
    (tmp_path / "gaps.csv").write_text("x,y,label\n1,,0\n2,,1\n")
    assert CsvSource(tmp_path / "gaps.csv").schema.field("y").type == pa.float64()


def test_csv_row_numbers_in_errors(tmp_path):
    lines = ["x,label"] + [f"{i}.0,{i % 2}" for i in range(30)]
    lines[21] = "inf,1"
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n")
    user_error("fit", path, "--out", tmp_path / "m.npz", "--epochs", 1, "--buffer-rows", 16, *FAST,
               names=["bad.csv", "row 20", "'x'"])


def test_csv_num_rows_unknown(tmp_path, blobs):
    assert CsvSource(write_csv(tmp_path / "b.csv", blob_table(*blobs))).num_rows is None


# ------------------------------------------------------------------------------------------ Arrow IPC


def write_ipc_file(path, table, max_chunksize=100, **options):
    with pa.ipc.new_file(str(path), table.schema, options=pa.ipc.IpcWriteOptions(**options)) as writer:
        writer.write_table(table, max_chunksize=max_chunksize)
    return path


def write_ipc_stream(path, table, max_chunksize=100):
    with pa.ipc.new_stream(str(path), table.schema) as writer:
        writer.write_table(table, max_chunksize=max_chunksize)
    return path


@pytest.mark.parametrize("name", ["blobs.arrow", "blobs.ipc", "blobs.arrows", "stream.arrow",
                                  "blobs.feather"])
def test_arrow_fit_end_to_end(tmp_path, blobs, name):
    table = blob_table(*blobs)
    path = tmp_path / name
    if name.startswith("stream") or name.endswith(".arrows"):
        write_ipc_stream(path, table)
    elif name.endswith(".feather"):
        feather.write_feather(table, str(path), compression="zstd", chunksize=128)
    else:
        write_ipc_file(path, table)
    source = open_source(path)
    assert isinstance(source, ArrowSource)
    assert source.num_rows == (None if name.startswith("stream") or name.endswith(".arrows") else 600)
    model = fit_rows(path, tmp_path, epochs=3)
    assert model.sizes == [5, 4, 3] and model.training["rows"] == 600
    assert learned(model, blobs) > 0.8


def test_feather_source_by_name(tmp_path, blobs):
    path = tmp_path / "blobs.dat"
    feather.write_feather(blob_table(*blobs), str(path))
    user_error("fit", path, "--out", tmp_path / "m.npz", *FAST, names=["--source", "feather"])
    assert fit_rows(path, tmp_path, "--source", "feather", epochs=1).training["rows"] == 600


def test_arrow_directory_and_glob(tmp_path, blobs):
    X, y = blobs
    d = tmp_path / "ipc"
    d.mkdir()
    for i, rows in enumerate(np.array_split(np.arange(600), 4)):
        write_ipc_file(d / f"part-{i}.arrow", blob_table(X[rows], y[rows]), max_chunksize=33)
    source = open_source(d)
    assert isinstance(source, ArrowSource) and len(source.files) == 4 and source.num_rows == 600
    assert fit_rows(d, tmp_path, epochs=1).training["rows"] == 600
    assert len(open_source(str(d / "part-[01].arrow")).files) == 2


def test_arrow_batches(tmp_path, blobs):
    table = blob_table(*blobs)
    source = ArrowSource(write_ipc_file(tmp_path / "b.arrow", table, max_chunksize=250))
    got = list(source.batches(["label", "x3"], 64))
    assert all(b.num_rows <= 64 for _, _, b in got)
    # first_row_index_in_file: each batch starts where the previous one ended.
    rows = [row for _, row, _ in got]
    assert rows == list(np.cumsum([0] + [b.num_rows for _, _, b in got[:-1]]))
    joined = pa.Table.from_batches([b for _, _, b in got])
    assert joined.to_pydict() == table.select(["label", "x3"]).to_pydict()


def test_arrow_list_column(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    table = pa.table({"pixels": pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), 6), "label": y})
    path = write_ipc_file(tmp_path / "vectors.arrow", table)
    model = fit_rows(path, tmp_path, epochs=1)
    assert model.input_column == "pixels" and model.sizes[0] == 6


# ------------------------------------------------------------------------------------------ Parquet


def test_hive_partitioned_directory(tmp_path, blobs):
    X, y = blobs
    table = blob_table(X, y).append_column("part", pa.array(np.arange(600) % 3))
    root = tmp_path / "hive"
    ds.write_dataset(table, root, format="parquet", partitioning=["part"], partitioning_flavor="hive")
    (root / "_SUCCESS").write_text("")
    (root / "_temporary").mkdir()
    pq.write_table(blob_table(X[:5], y[:5]), root / "_temporary" / "half-written.parquet")
    source = open_source(root)
    assert isinstance(source, ParquetSource)
    assert len(source.files) == 3 and all("part=" in f for f in source.files)
    assert source.num_rows == 600
    model = fit_rows(root, tmp_path, epochs=1)
    assert model.features == [f"x{j}" for j in range(5)]  # the partition key is not a feature
    assert model.training["rows"] == 600


def test_directory_source_chosen_by_most_files(tmp_path, blobs):
    X, y = blobs
    d = tmp_path / "mixed"
    d.mkdir()
    for i, rows in enumerate(np.array_split(np.arange(600), 3)):
        pq.write_table(blob_table(X[rows], y[rows]), d / f"part-{i}.parquet")
    write_csv(d / "summary.csv", blob_table(X[:3], y[:3]))
    assert isinstance(open_source(d), ParquetSource)


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("name, content", [
    ("corrupt.arrow", b"ARROW1\x00\x00 not really"),
    ("corrupt.feather", b"\x00" * 64),
    ("empty.csv", b""),
    ("corrupt.csv.gz", b"not gzip at all"),
    ("ragged.csv", b"a,b,label\n1,2,0\n1,2,3,4\n"),
])
def test_corrupt_files_named(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    user_error("fit", path, "--out", tmp_path / "m.npz", *FAST, names=[path])


@pytest.mark.parametrize("name", ["missing.csv", "missing.arrow", "missing.tsv.gz"])
def test_missing_files_named(tmp_path, name):
    path = tmp_path / name
    flat = user_error("fit", path, "--out", tmp_path / "m.npz", *FAST, names=[path])
    assert "not exist" in flat
    for source in ("csv", "arrow"):
        user_error("fit", path, "--out", tmp_path / "m.npz", "--source", source, *FAST, names=[path])


def test_directory_without_known_files(tmp_path):
    d = tmp_path / "nothing"
    d.mkdir()
    (d / "notes.txt").write_text("x")
    user_error("fit", d, "--out", tmp_path / "m.npz", *FAST, names=[d, ".csv", ".arrow", ".parquet"])


def test_glob_without_extension(tmp_path, blobs):
    write_csv(tmp_path / "a.csv", blob_table(*blobs))
    assert isinstance(open_source(str(tmp_path / "a.*")), CsvSource)
    user_error("fit", str(tmp_path / "zzz*"), "--out", tmp_path / "m.npz", *FAST, names=["zzz*", "No files"])


def test_source_options_from_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from streambp.cli import app

    rng = np.random.default_rng(0)
    lines = [f"{a:.4f};{b:.4f};{int(a + b > 0)}" for a, b in rng.normal(size=(200, 2))]
    path = tmp_path / "noheader.csv"
    path.write_text("\n".join(lines) + "\n")
    runner = CliRunner()
    ok = runner.invoke(app, ["fit", str(path), "--label", "f2", "--epochs", "2", "--hidden", "0",
                             "--source-option", "header=false", "--source-option", "delimiter=;",
                             "--out", str(tmp_path / "m.npz")])
    assert ok.exit_code == 0, ok.output
    assert streambp.load(tmp_path / "m.npz").features == ["f0", "f1"]
    bad = runner.invoke(app, ["evaluate", str(tmp_path / "m.npz"), str(path), "--label", "f2",
                              "--source-option", "quote=x"])
    assert bad.exit_code == 2 and "no option 'quote'" in bad.output and "delimiter" in bad.output
    malformed = runner.invoke(app, ["predict", str(tmp_path / "m.npz"), str(path), "--source-option", "header"])
    assert malformed.exit_code == 2 and "KEY=VALUE" in malformed.output


def streambp_process(*args):
    """The real command in a subprocess: (exit code, stdout + stderr)."""
    proc = subprocess.run([sys.executable, "-m", "streambp", *map(str, args)], capture_output=True, text=True,
                          timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


CSV_PROBLEMS = {
    # name: (file bytes, options, what the message must say besides the file name)
    "header-not-a-bool": (b"x,label\n1,0\n2,1\n", ["header=maybe"], ["header", "true or false", "'maybe'"]),
    "duplicate-columns": (b"a,a,label\n1,2,0\n3,4,1\n", [], ["'a'", "more than once", "header=false"]),
    "latin-1-header": ("café,label\n1,0\n2,1\n".encode("latin-1"), [], ["not UTF-8", "iconv"]),
    "block-size-zero": (b"x,label\n1,0\n2,1\n", ["block_size=0"], ["block_size", "at least 1", "got 0"]),
    "block-size-text": (b"x,label\n1,0\n2,1\n", ["block_size=big"], ["block_size", "'big'"]),
    "long-delimiter": (b"x;label\n1;0\n2;1\n", ["delimiter=;;"], ["delimiter", "one character", "';;'"]),
    "numeric-delimiter": (b"x1label\n101\n211\n", ["delimiter=1"], ["delimiter", "one character", "got 1"]),
}


@pytest.mark.parametrize("problem", list(CSV_PROBLEMS))
def test_csv_problems_are_user_errors_naming_the_file(tmp_path, problem):
    content, options, needles = CSV_PROBLEMS[problem]
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    out = tmp_path / "m.npz"
    code, output = streambp_process("fit", path, "--out", out, "--epochs", 1, *FAST,
                                    *[a for o in options for a in ("--source-option", o)])
    assert code == 2, output
    assert "Traceback" not in output
    message = " ".join(output.split())
    assert message.startswith(f"Error: Cannot read {path}") and message.count("Error:") == 1, message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    assert path.read_bytes() == content and not out.exists()


def test_csv_header_option_takes_bools_only(tmp_path, blobs):
    path = write_csv(tmp_path / "blobs.csv", blob_table(*blobs))
    assert open_source(path, header=True).schema.names[0] == "x0"
    for value in ("maybe", 1, "true"):  # only parse_source_options turns "true" into True
        with pytest.raises(StreambpError, match="header"):
            open_source(path, header=value)


def test_csv_value_of_another_type_in_a_later_file_names_the_column(tmp_path):
    # Arrow numbers the column in the file ("CSV column #2"); the message names it, in the later file's own
    # column order.
    d = tmp_path / "parts"
    d.mkdir()
    (d / "a.csv").write_text("x,y,label\n1,2.5,0\n3,4.5,1\n")
    (d / "b.csv").write_text("label,x,y\n0,5,6.5\n1,7,oops\n")
    with pytest.raises(StreambpError) as caught:
        all_rows(CsvSource(d), ["x", "y", "label"])
    message = str(caught.value)
    assert "b.csv" in message and "column 'y':" in message and "oops" in message, message
