"""Built-in data sources, streamed by record batch: Parquet, CSV/TSV and Arrow IPC (Feather).

Each takes a file, a directory (searched recursively, hive-partitioned key=value directories included;
names starting with "." or "_" skipped) or a glob, and returns an object with files, schema,
file_schemas, num_rows and batches(columns, batch_rows); see docs/plugins.md.
"""
import importlib
import re

from .. import hookimpl
from ..errors import StreambpError
from ..registry import expand_paths


class _OnFirstUse:
    """A module imported when one of its attributes is first read: the plugin manager loads this module
    for `streambp --help`, which should not wait for pyarrow."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attribute):
        return getattr(importlib.import_module(self._name), attribute)


pa = _OnFirstUse("pyarrow")
pcsv = _OnFirstUse("pyarrow.csv")
pq = _OnFirstUse("pyarrow.parquet")

PARQUET_EXTENSIONS = (".parquet", ".pq", ".parq")
CSV_EXTENSIONS = (".csv", ".csv.gz", ".csv.bz2", ".tsv", ".tsv.gz", ".tsv.bz2")
ARROW_EXTENSIONS = (".arrow", ".feather", ".ipc", ".arrows")
FEATHER_EXTENSIONS = (".feather",)


def read_error(file, what, e):
    if isinstance(e, FileNotFoundError):
        return StreambpError(f"Cannot read {file}: it does not exist.")
    if isinstance(e, PermissionError):
        return StreambpError(f"Cannot read {file}: permission denied.")
    return StreambpError(f"Cannot read {file}: it is not a readable {what} file ({e}).")


def arrow_error(file, e):
    return read_error(file, "Parquet", e)


def sliced(batch, batch_rows):
    """batch in pieces of at most batch_rows rows (zero-copy slices)."""
    if batch.num_rows <= batch_rows:
        yield batch
        return
    for start in range(0, batch.num_rows, batch_rows):
        yield batch.slice(start, batch_rows)


def shuffled(items, rng):
    return items if rng is None else [items[i] for i in rng.permutation(len(items))]


class ParquetSource:
    """A Parquet dataset read file by file, row group by row group, only the columns asked for."""

    def __init__(self, path):
        self.files = expand_paths(path, PARQUET_EXTENSIONS)
        self.file_schemas = []
        self.num_rows = 0
        self.units = []  # (file, row group, its first row in the file): what a shuffled epoch permutes
        for f in self.files:
            try:
                meta = pq.read_metadata(f)
                self.file_schemas.append(meta.schema.to_arrow_schema())
                first = 0
                for g in range(meta.num_row_groups):
                    self.units.append((f, g, first))
                    first += meta.row_group(g).num_rows
            except PermissionError:
                raise StreambpError(f"Cannot read {f}: permission denied.") from None
            except (pa.ArrowException, OSError) as e:
                raise arrow_error(f, e) from None
            self.num_rows += meta.num_rows
        self.schema = self.file_schemas[0]

    def visit_units(self):
        """(file, first row) of each unit batches() permutes with one rng.permutation(len(units)): row groups."""
        return [(f, first) for f, _, first in self.units]

    def batches(self, columns, batch_rows, rng=None):
        """Row group by row group, in file order, or in an order drawn from rng (a numpy Generator)."""
        units = self.units if rng is None else [self.units[i] for i in rng.permutation(len(self.units))]
        pf = pf_path = None
        for f, group, row in units:
            try:
                # One reader per row group: a reader over the whole file kept every decoded row group
                # alive until its end (measured: 785 MB of Arrow memory for an 817 MB file).
                if pf is None or pf_path != f:
                    pf, pf_path = pq.ParquetFile(f, pre_buffer=False), f
                for batch in pf.iter_batches(batch_size=batch_rows, columns=columns, row_groups=[group],
                                             use_threads=True):
                    yield f, row, batch
                    row += batch.num_rows
            except (pa.ArrowException, OSError) as e:
                raise arrow_error(f, e) from None


class CsvSource:
    """CSV or TSV files (optionally .gz or .bz2 compressed), streamed block by block with
    pyarrow.csv.open_csv, only the columns asked for.

    Column types are inferred once, from the first block of the first file, and given explicitly to
    every reader after that, so a later block or file cannot change a column's type (a value that does
    not fit, such as 1.5 in a column inferred as integers, is an error naming the file). A column that
    is empty throughout the first block is read as float64.

    Options: delimiter (default: tab for .tsv files; for others a comma, unless the first line has
    none but has semicolons, tabs or pipes), header (default True: the first line names the columns;
    with False they are called f0, f1, ...), block_size (bytes read at a time, default 1 MiB). Each
    file's header must be UTF-8 and name every column once.
    num_rows is None: counting would mean reading every file.
    """

    def __init__(self, path, delimiter=None, header=True, block_size=1 << 20):
        self.files = expand_paths(path, CSV_EXTENSIONS)
        self._check_options(path, delimiter, header, block_size)
        self.delimiter = delimiter
        self.header = header
        self.block_size = block_size
        self.num_rows = None
        inferred = self._schema(self.files[0], None)
        self.column_types = {f.name: (pa.float64() if pa.types.is_null(f.type) else f.type) for f in inferred}
        self.file_schemas = [self._schema(f, self.column_types) for f in self.files]
        self.schema = self.file_schemas[0]

    @staticmethod
    def _check_options(path, delimiter, header, block_size):
        """Options as `--source-option KEY=VALUE` gives them: a bool, an int or a string."""
        problem = None
        if not isinstance(header, bool):
            problem = f"the option header takes true or false (--source-option header=false), got {header!r}"
        elif delimiter is not None and not (isinstance(delimiter, str) and len(delimiter) == 1
                                            and delimiter not in '\r\n"'):
            problem = (f"the option delimiter takes one character other than a quote or a line break, such as ; "
                       f"(--source-option 'delimiter=;'), got {delimiter!r}")
        elif isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            problem = (f"the option block_size takes a number of bytes of at least 1, such as 1048576 "
                       f"(--source-option block_size=1048576), got {block_size!r}")
        if problem:
            raise StreambpError(f"Cannot read {path} as CSV: {problem}.")

    def _schema(self, file, column_types):
        """The file's schema (read from its first block); its header must be UTF-8 and its names unique."""
        try:
            with self._open(file, column_types) as reader:
                schema = reader.schema
            names = schema.names  # decoded here
        except UnicodeDecodeError as e:
            raise StreambpError(f"Cannot read {file}: its header is not UTF-8 text ({e.reason} at byte "
                                f"{e.start}). Save the file as UTF-8, e.g. iconv -f latin1 -t utf-8 {file} > "
                                "new.csv.") from None
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise StreambpError(f"Cannot read {file}: its header names the column(s) "
                                f"{', '.join(map(repr, repeated))} more than once. Give each column its own name "
                                "in the header (or read the file with --source-option header=false, which names "
                                "the columns f0, f1, ...).")
        return schema

    def _delimiter(self, file):
        if self.delimiter is not None:
            return self.delimiter
        name = file.lower()
        if name.endswith((".tsv", ".tsv.gz", ".tsv.bz2")):
            return "\t"
        try:
            with pa.input_stream(file) as stream:  # decompresses by extension
                line = stream.read(65536).split(b"\n", 1)[0]
        except (pa.ArrowException, OSError):
            return ","  # open_csv reports the problem
        if b"," not in line:
            for candidate in (";", "\t", "|"):
                if candidate.encode() in line:
                    return candidate
        return ","

    def _open(self, file, column_types, columns=None):
        read = pcsv.ReadOptions(block_size=self.block_size, autogenerate_column_names=not self.header)
        parse = pcsv.ParseOptions(delimiter=self._delimiter(file))
        # an empty field is a null in a string column too (as pandas writes missing values), not a category ""
        convert = pcsv.ConvertOptions(column_types=column_types, include_columns=columns, strings_can_be_null=True)
        try:
            return pcsv.open_csv(file, read_options=read, parse_options=parse, convert_options=convert)
        except (pa.ArrowException, OSError) as e:
            raise self._error(file, e) from None

    def _error(self, file, e):
        error = read_error(file, "CSV", e)
        if isinstance(e, pa.ArrowInvalid) and "conversion error" in str(e).lower():
            name = self._column_name(file, str(e))
            column = f"column {name!r}: " if name is not None else ""
            error = StreambpError(f"Cannot read {file}: {column}{e}. Column types are inferred from the first "
                                  f"block of {self.files[0]}.")
        return error

    def _column_name(self, file, message):
        """The name of the column Arrow's message numbers ("CSV column #3", counted in the file), or None."""
        found = re.search(r"CSV column #(\d+)", message)
        if not found:
            return None
        read = pcsv.ReadOptions(block_size=self.block_size, autogenerate_column_names=not self.header)
        as_bytes = pcsv.ConvertOptions(column_types={n: pa.binary() for n in self.column_types})  # never fails
        try:
            with pcsv.open_csv(file, read_options=read, parse_options=pcsv.ParseOptions(
                    delimiter=self._delimiter(file)), convert_options=as_bytes) as reader:
                names = reader.schema.names
        except (pa.ArrowException, OSError):
            return None
        i = int(found.group(1))
        return names[i] if i < len(names) else None

    def visit_units(self):
        """(file, first row) of each unit batches() permutes with one rng.permutation(len(units)): files."""
        return [(f, 0) for f in self.files]

    def batches(self, columns, batch_rows, rng=None):
        """File by file, in order or in an order drawn from rng (blocks of a CSV file stay in order)."""
        for f in shuffled(self.files, rng):
            row = 0
            with self._open(f, self.column_types, list(columns)) as reader:
                while True:
                    try:
                        batch = reader.read_next_batch()
                    except StopIteration:
                        break
                    except (pa.ArrowException, OSError) as e:
                        raise self._error(f, e) from None
                    for piece in sliced(batch, batch_rows):
                        yield f, row, piece
                        row += piece.num_rows


class ArrowSource:
    """Arrow IPC files: the file (random access) format, which Feather v2 is, memory-mapped, or the
    stream format (.arrows), read batch by batch; only the columns asked for are kept.

    num_rows is counted from the metadata for the file format, and None when a file is in the stream
    format (counting would mean reading it).
    """

    def __init__(self, path):
        self.files = expand_paths(path, ARROW_EXTENSIONS)
        self.file_schemas = []
        self.num_rows = 0
        for f in self.files:
            reader, source = self._open(f)
            try:
                self.file_schemas.append(reader.schema)
                # count_rows (pyarrow >= 17) reads only the batches' metadata, not the (compressed) data.
                if self.num_rows is not None and hasattr(reader, "count_rows") and \
                        isinstance(reader, pa.ipc.RecordBatchFileReader):
                    self.num_rows += reader.count_rows()
                else:
                    self.num_rows = None
            except (pa.ArrowException, OSError) as e:
                raise read_error(f, "Arrow IPC", e) from None
            finally:
                source.close()
        self.schema = self.file_schemas[0]

    @staticmethod
    def _open(file):
        """(reader, underlying file): the file format if the file has its footer, else the stream format."""
        try:
            source = pa.memory_map(file)
        except (pa.ArrowException, OSError) as e:
            raise read_error(file, "Arrow IPC", e) from None
        try:
            return pa.ipc.open_file(source), source
        except (pa.ArrowException, OSError):
            pass
        try:
            source.seek(0)
            return pa.ipc.open_stream(source), source
        except (pa.ArrowException, OSError) as e:
            source.close()
            raise read_error(file, "Arrow IPC", e) from None

    def _record_batches(self, reader):
        if isinstance(reader, pa.ipc.RecordBatchFileReader):
            for i in range(reader.num_record_batches):
                yield reader.get_record_batch(i)
        else:
            yield from reader

    visit_units = CsvSource.visit_units

    def batches(self, columns, batch_rows, rng=None):
        """File by file, in order or in an order drawn from rng."""
        columns = list(columns)
        for f in shuffled(self.files, rng):
            row = 0
            reader, source = self._open(f)
            try:
                for batch in self._record_batches(reader):
                    for piece in sliced(batch.select(columns), batch_rows):
                        yield f, row, piece
                        row += piece.num_rows
            except (pa.ArrowException, OSError, KeyError) as e:
                raise read_error(f, "Arrow IPC", e) from None
            finally:
                source.close()


@hookimpl
def register_sources(register):
    register("parquet", ParquetSource, PARQUET_EXTENSIONS)
    register("csv", CsvSource, CSV_EXTENSIONS)
    register("arrow", ArrowSource, ARROW_EXTENSIONS)
    register("feather", ArrowSource, FEATHER_EXTENSIONS)
