"""Built-in data source: Parquet files, directories of them, and globs, streamed by record batch."""
import glob
import os

import pyarrow as pa
import pyarrow.parquet as pq

from .. import hookimpl
from ..errors import StreambpError

PARQUET_EXTENSIONS = (".parquet", ".pq", ".parq")


def expand_paths(path, extensions):
    """The files named by a file path, a directory (searched recursively) or a glob, in sorted order."""
    path = os.fspath(path)
    if not os.path.exists(path) and any(ch in path for ch in "*?["):
        files = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
        if not files:
            raise StreambpError(f"No files match {path}.")
        return files
    if os.path.isdir(path):
        files = sorted(
            os.path.join(root, name)
            for root, dirs, names in os.walk(path)
            for name in names
            if name.endswith(extensions) and not name.startswith((".", "_"))
        )
        if not files:
            raise StreambpError(f"Directory {path} holds no files ending in {', '.join(extensions)}.")
        return files
    if not os.path.exists(path):
        raise StreambpError(f"{path} does not exist.")
    return [path]


def arrow_error(file, e):
    return StreambpError(f"Cannot read {file}: it is not a readable Parquet file ({e}).")


class ParquetSource:
    """A Parquet dataset read file by file, row group by row group, only the columns asked for."""

    def __init__(self, path):
        self.files = expand_paths(path, PARQUET_EXTENSIONS)
        self.file_schemas = []
        self.num_rows = 0
        for f in self.files:
            try:
                meta = pq.read_metadata(f)
                self.file_schemas.append(meta.schema.to_arrow_schema())
            except PermissionError:
                raise StreambpError(f"Cannot read {f}: permission denied.") from None
            except (pa.ArrowException, OSError) as e:
                raise arrow_error(f, e) from None
            self.num_rows += meta.num_rows
        self.schema = self.file_schemas[0]

    def batches(self, columns, batch_rows):
        for f in self.files:
            row = 0
            try:
                pf = pq.ParquetFile(f)
                for batch in pf.iter_batches(batch_size=batch_rows, columns=columns, use_threads=True):
                    yield f, row, batch
                    row += batch.num_rows
            except (pa.ArrowException, OSError) as e:
                raise arrow_error(f, e) from None


@hookimpl
def register_sources(register):
    register("parquet", ParquetSource, PARQUET_EXTENSIONS)
