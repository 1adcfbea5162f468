"""Column roles and what the streaming pre-pass learns about each column of a training table.

Dimension key: N rows, D numeric inputs (the numeric columns, then one missing-indicator input per numeric
column that had nulls), C categorical columns, V slots (all categorical columns' slots together).

Every column but the label gets a role, decided from the schema and one pass over the data:
- numeric (integer, floating-point, decimal, timestamp and date columns): nulls and NaN are filled with the
  column's training mean, and a column that had any gets a 0/1 "missing" input beside it; scaled to mean 0
  and variance 1 unless standardisation is off. Timestamps and dates are used as one number (their integer
  value in the column's unit), scaled like the rest.
- categorical (string, dictionary and boolean columns, and any named with --categorical): a vocabulary of
  the --max-categories most frequent values seen at least --min-frequency times, each with its own slot, plus
  a "missing" slot (null) and an "other" slot (rare and unseen values); or, with --hash-buckets, or when a
  column has more distinct values than the pre-pass keeps count of, a stable hash of the value into buckets,
  so memory stays bounded whatever the number of distinct values. The network reads slots as indices into
  an embedding table (kernels/embedding.py): the one-hot rows are never built.
- ignored, with the reason: --ignore, a string column whose values are all distinct (a UUID), an integer
  column that looks like a row index (all distinct, and a permutation of a range or strictly monotonic in
  file order), a column that is always null, a type the network cannot use. Nothing is dropped silently:
  the summary printed before training lists every column.
With --val-fraction, what is learned from values comes from the training side of the split alone.
"""
import os
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import StreambpError
from .kernels.rows import split_mask

READ_ROWS = 65536  # rows per record batch asked from a source
TRACK_LIMIT = 1 << 18  # distinct values counted exactly per column; past this a column is hashed
DEFAULT_BUCKETS = 1 << 16  # hash buckets of a column with more distinct values than TRACK_LIMIT
ID_MIN_ROWS = 20  # a column is taken for an id only when at least this many rows are all distinct
FLOAT64_MAX = float(np.finfo(np.float64).max)
MISSING, OTHER = 0, 1  # slots of a categorical column (a hashed column has no OTHER: slots 1.. are buckets)


def is_numeric(t):
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def is_vector(t):
    return (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)) and \
        is_numeric(t.value_type)


def is_text(t):
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def is_temporal(t):
    return pa.types.is_timestamp(t) or pa.types.is_date(t)


def value_type(t):
    """The type of a column's values (a dictionary column's value type)."""
    return t.value_type if pa.types.is_dictionary(t) else t


def plain(arr):
    """A dictionary-encoded array decoded; others unchanged."""
    return arr.dictionary_decode() if pa.types.is_dictionary(arr.type) else arr


def where(source):
    return source.files[0] if len(source.files) == 1 else f"{source.files[0]} (and {len(source.files) - 1} more)"


def null_row(arr):
    return int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])


def file_key(path):
    """A stable 32-bit key for a file of a dataset: what the validation split hashes with the row index."""
    return zlib.crc32(os.fspath(path).encode("utf-8"))


def split_side(f, row0, n, split):
    """Whether each of the n rows from row row0 of file f is on the side split = (fraction, want_val) keeps
    (the rows stream.chunks keeps with the same split); None without a split."""
    if not split:
        return None
    keep = np.empty(n, dtype=np.bool_)
    split_mask(keep, file_key(f), row0, *split)
    return keep


@dataclass
class Numeric:
    """A numeric input column: null/NaN become `fill` (None: they are bad rows, as in models before format
    3), and with `indicator` an extra input is 1 where the value was missing."""

    name: str
    fill: float | None = None
    indicator: bool = False
    nulls: int = 0  # nulls and NaN in the training data


@dataclass
class Categorical:
    """A categorical input column and its slots, from `offset`: MISSING, OTHER, then one per value of
    `values`; or, hashed (values None), MISSING then `buckets` hash buckets."""

    name: str
    values: list | None
    value_type: str = "string"
    buckets: int = 0
    offset: int = 0
    distinct: int = 0  # distinct values in the training data (at least, when past TRACK_LIMIT)
    nulls: int = 0

    @property
    def slots(self):
        return 2 + len(self.values) if self.values is not None else 1 + self.buckets


@dataclass
class Ignored:
    name: str
    reason: str


@dataclass
class FeatureSpec:
    """Which columns feed the network and how: D numeric inputs (wide columns plus missing indicators, or
    the D values of one list column `input_column`), C categorical columns with V slots, the ignored columns,
    and with mean and inv_std [D] the standardisation (x - mean) * inv_std applied once read."""

    numeric: list = field(default_factory=list)
    categorical: list = field(default_factory=list)
    ignored: list = field(default_factory=list)
    input_column: str | None = None
    vector_width: int = 0
    mean: np.ndarray | None = None
    inv_std: np.ndarray | None = None

    @property
    def indicators(self):
        return [c for c in self.numeric if c.indicator]

    @property
    def features(self):
        """Names of the D numeric inputs, in order."""
        if self.input_column:
            return [f"{self.input_column}[{i}]" for i in range(self.vector_width)]
        return [c.name for c in self.numeric] + [f"{c.name} missing" for c in self.indicators]

    @property
    def width(self):
        return self.vector_width if self.input_column else len(self.numeric) + len(self.indicators)

    @property
    def slots(self):
        return sum(c.slots for c in self.categorical)

    @property
    def columns(self):
        """The columns read from the data."""
        if self.input_column:
            return [self.input_column]
        return [c.name for c in self.numeric] + [c.name for c in self.categorical]

    def to_metadata(self):
        """JSON-ready description (the model file's "inputs"; the scaler arrays are stored apart)."""
        return {"numeric": [asdict(c) for c in self.numeric],
                "categorical": [asdict(c) for c in self.categorical],
                "ignored": [asdict(c) for c in self.ignored],
                "input_column": self.input_column, "vector_width": self.vector_width}

    @classmethod
    def from_metadata(cls, meta, mean=None, inv_std=None):
        """The spec of to_metadata(); raises StreambpError (naming what is wrong) on a malformed one: every
        field of the type and range the pre-pass writes, vocabularies of their value_type, slots in order."""
        try:
            if not (isinstance(meta, dict) and all(isinstance(meta.get(k), list)
                                                   for k in ("numeric", "categorical", "ignored"))):
                raise TypeError("numeric, categorical and ignored must be lists")
            spec = cls([Numeric(**c) for c in meta["numeric"]], [Categorical(**c) for c in meta["categorical"]],
                       [Ignored(**c) for c in meta["ignored"]], meta["input_column"], meta["vector_width"],
                       mean, inv_std)
        except (KeyError, TypeError, ValueError) as e:
            raise StreambpError(f"its inputs description is malformed ({type(e).__name__}: {e})") from None
        width = spec.vector_width
        if not is_count(width) or (spec.input_column is None) != (width == 0) or spec.input_column is not None and \
                not (isinstance(spec.input_column, str) and not spec.numeric and not spec.categorical):
            raise StreambpError(f"its list column {spec.input_column!r:.40} (of {spec.vector_width!r:.20} values) "
                                "is malformed")
        offset = 0
        for c in spec.categorical:
            check_categorical(c, offset)
            offset += c.slots
        for c in spec.numeric:
            if not isinstance(c.name, str) or not is_count(c.nulls) or not isinstance(c.indicator, bool) or \
                    c.fill is not None and not is_finite_number(c.fill) or c.indicator and c.fill is None:
                raise StreambpError(f"its numeric column {c.name!r:.40} is malformed")
        for c in spec.ignored:
            if not (isinstance(c.name, str) and isinstance(c.reason, str)):
                raise StreambpError(f"its ignored column {c.name!r:.40} is malformed")
        names = spec.columns
        if len(set(names)) != len(names):
            raise StreambpError(f"its inputs name a column twice ({next(n for n in names if names.count(n) > 1)!r})")
        return spec

    @classmethod
    def plain(cls, features, input_column=None, mean=None, inv_std=None):
        """The spec of a model before format 3: numeric columns only, nulls are bad rows."""
        if input_column:
            return cls(input_column=input_column, vector_width=len(features), mean=mean, inv_std=inv_std)
        return cls([Numeric(f) for f in features], mean=mean, inv_std=inv_std)

    def summary(self):
        """One row (column, role, detail) per column, in the order of the table."""
        rows = []
        if self.input_column:
            rows.append((self.input_column, "numeric", f"list of {self.vector_width} values"))
        for c in self.numeric:
            rows.append((c.name, "numeric", f"{c.nulls:,} missing: filled with the mean, plus an indicator"
                         if c.indicator else ""))
        for c in self.categorical:
            if c.values is None:
                more = "+" if c.distinct > TRACK_LIMIT else ""
                detail = f"{c.distinct:,}{more} values, hashed into {c.buckets:,} buckets"
            elif len(c.values) < c.distinct:
                detail = f"{c.distinct:,} values: the {len(c.values):,} most frequent, the rest as 'other'"
            else:
                detail = f"{c.distinct:,} values"
            if c.nulls:
                detail += f", {c.nulls:,} missing"
            rows.append((c.name, "categorical", detail))
        for c in self.ignored:
            rows.append((c.name, "ignored", c.reason))
        return rows


def is_count(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def is_finite_number(v):
    """Whether v is an int or float (not a bool) within float64's finite range (not NaN)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and -FLOAT64_MAX <= v <= FLOAT64_MAX


def check_categorical(c, offset):
    """StreambpError unless each field of a Categorical read from a model file is what the pre-pass writes:
    a value_type that a categorical column holds, distinct vocabulary values of that type (or 2 or more
    hash buckets), counts, and slots starting at `offset`."""
    try:
        t = pa.type_for_alias(c.value_type) if isinstance(c.value_type, str) else None
    except ValueError:
        t = None
    python = None if t is None else str if is_text(t) else bool if pa.types.is_boolean(t) else \
        int if pa.types.is_integer(t) else None
    ok = isinstance(c.name, str) and python is not None and is_count(c.offset) and c.offset == offset and \
        is_count(c.distinct) and is_count(c.nulls) and is_count(c.buckets)
    if ok and c.values is None:
        ok = c.buckets >= 2
    elif ok:
        ok = c.buckets == 0 and isinstance(c.values, list) and \
            all(isinstance(v, python) and isinstance(v, bool) == (python is bool) for v in c.values) and \
            len(set(c.values)) == len(c.values)
        try:
            ok = ok and len(pa.array(c.values, type=t)) == len(c.values)  # integers in the type's range
        except (pa.ArrowException, OverflowError):
            ok = False
    if not ok:
        raise StreambpError(f"its categorical column {c.name!r:.40} is malformed (value_type {c.value_type!r:.20}, "
                            f"values {c.values!r:.60}, buckets {c.buckets!r:.20}, offset {c.offset!r:.20})")


@dataclass
class LabelInfo:
    classes: list
    label_type: str
    counts: list
    rows: int


@dataclass
class Choices:
    """What the user said about columns (flags of `streambp fit`)."""

    features: list | None = None  # only these columns (None: every column but the label)
    ignore: list = field(default_factory=list)
    categorical: list = field(default_factory=list)
    numeric: list = field(default_factory=list)
    max_categories: int = 1000
    min_frequency: int = 1
    hash_buckets: int = 0
    standardize: bool = True
    dtype: str = "float32"  # what the network reads: a value past its range is infinite (a bad value)

    @classmethod
    def of(cls, config):
        return cls(config.features, list(getattr(config, "ignore", None) or []),
                   list(getattr(config, "categorical", None) or []), list(getattr(config, "numeric", None) or []),
                   getattr(config, "max_categories", 1000), getattr(config, "min_frequency", 1),
                   getattr(config, "hash_buckets", 0), config.standardize, getattr(config, "dtype", "float32"))


def require_column(source, name, what):
    if name not in source.schema.names:
        raise StreambpError(f"{source.files[0]} has no {what} column {name!r}. Columns: "
                            f"{', '.join(source.schema.names)}.")


def check_unique_names(source):
    """Every file of the source names each of its columns once: a name given twice cannot be looked up."""
    for f, schema in zip(source.files, getattr(source, "file_schemas", [source.schema])):
        names = schema.names
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise StreambpError(f"{f} has two columns named {dup!r}; rename one.")


def check_schemas(source, columns):
    """Every file of the source has each column, once, with the first file's type."""
    check_unique_names(source)
    first = source.schema
    for f, schema in zip(source.files, getattr(source, "file_schemas", [first])):
        names = schema.names
        index = {n: i for i, n in enumerate(names)}
        for c in columns:
            if c not in index:
                raise StreambpError(f"{f} has no column {c!r}, which {source.files[0]} has.")
            if schema.field(index[c]).type != first.field(c).type:
                raise StreambpError(f"Column {c!r} is {schema.field(index[c]).type} in {f} but "
                                    f"{first.field(c).type} in {source.files[0]}.")


def vector_width(source, column):
    """The number of values in each row of a list column (that of its first row), at least 1."""
    t = source.schema.field(column).type
    width = t.list_size if pa.types.is_fixed_size_list(t) else None
    for f, _, batch in source.batches([column], 1):
        arr = batch.column(0)
        if width is None and arr.null_count:
            raise StreambpError(f"{f}: column {column!r} is null in row 0.")
        width = len(arr[0].values) if width is None else width
        if width == 0:
            raise StreambpError(f"{f}: list column {column!r} holds no values (an empty list in row 0); a list "
                                "feature needs one value or more in every row. Name other features with "
                                "--features, or --ignore it.")
        return width
    raise StreambpError(f"{where(source)} has no rows.")


def candidate_roles(source, label, choices):
    """{column: "numeric" | "categorical" | "vector"} for the columns to scan, and the Ignored ones."""
    require_column(source, label, "label")
    schema = source.schema
    names = schema.names
    named = set(choices.ignore) | set(choices.categorical) | set(choices.numeric) | set(choices.features or [])
    for c in sorted(named):
        require_column(source, c, "feature" if c not in choices.ignore else "--ignore")
    if label in named:
        raise StreambpError(f"Column {label!r} is the label; it cannot also be a feature.")
    wanted = list(choices.features) if choices.features else [n for n in names if n != label]
    roles, ignored = {}, []
    for name in wanted:
        t = schema.field(name).type
        vt = value_type(t)
        if name in choices.ignore:
            ignored.append(Ignored(name, "--ignore"))
        elif name in choices.categorical:
            if not (is_text(vt) or pa.types.is_boolean(vt) or pa.types.is_integer(vt)):
                raise StreambpError(f"{source.files[0]}: --categorical column {name!r} has type {t}; categorical "
                                    "columns hold strings, booleans or integer codes.")
            roles[name] = "categorical"
        elif name in choices.numeric:
            if not (is_numeric(vt) or pa.types.is_boolean(vt) or pa.types.is_decimal(vt) or is_temporal(vt)):
                raise StreambpError(f"{source.files[0]}: --numeric column {name!r} has type {t}, which is not a "
                                    "number.")
            roles[name] = "numeric"
        elif is_numeric(vt) or pa.types.is_decimal(vt) or is_temporal(vt):
            roles[name] = "numeric"
        elif is_text(vt) or pa.types.is_boolean(vt):
            roles[name] = "categorical"
        elif is_vector(t):
            roles[name] = "vector"
        elif choices.features:
            raise StreambpError(f"{source.files[0]}: feature column {name!r} has type {t}, which cannot be a feature "
                                "(numbers, strings, booleans, dates and one list column of numbers can).")
        elif pa.types.is_null(t):
            ignored.append(Ignored(name, "always null"))
        else:
            ignored.append(Ignored(name, f"type {t} is not used (numbers, strings, booleans, dates and one list "
                                         "column of numbers are)"))
    vectors = [n for n, r in roles.items() if r == "vector"]
    if vectors and (len(roles) > 1 or choices.features and len(choices.features) > 1):
        if choices.features:
            raise StreambpError(f"{source.files[0]}: list column {vectors[0]!r} can only be the one feature; "
                                "name it alone with --features.")
        for n in vectors:
            del roles[n]
            ignored.append(Ignored(n, "a list column is used only as the one feature (--features NAME)"))
    return roles, ignored


class _Index:
    """Whether a string or integer column looks like a row id, over every row (both sides of a split): no null
    and every value different; integers also a permutation of a range (max - min + 1 values) or strictly
    monotonic in file order, so that timestamps, prices and other all-different numbers stay features.
    Tracked until that fails or TRACK_LIMIT values."""

    def __init__(self):
        self.seen = np.zeros(0, dtype=np.int64)
        self.values = set()
        self.rows, self.text, self.alive = 0, False, True
        self.last, self.rising, self.falling = None, True, True

    def add(self, arr):
        if not self.alive:
            return
        if arr.null_count:
            self.alive = False
            return
        self.rows += len(arr)
        self.text = is_text(arr.type)
        if self.text:
            new = arr.to_pylist()
            before = len(self.values)
            self.values.update(new)
            self.alive = len(self.values) == before + len(new)
        elif len(arr):
            v = arr.cast(pa.int64(), safe=False).to_numpy()  # uint64 wraps around: still one-to-one
            merged = np.concatenate([self.seen, v])
            self.seen = np.unique(merged)
            self.alive = len(self.seen) == len(merged)
            ordered = v if self.last is None else np.concatenate([[self.last], v])
            self.rising &= bool((ordered[1:] > ordered[:-1]).all())
            self.falling &= bool((ordered[1:] < ordered[:-1]).all())
            self.last = v[-1]
        if len(self.seen) + len(self.values) > TRACK_LIMIT:
            self.alive = False  # cannot tell any more: the column is used

    def reason(self):
        """Why the column is taken for an id, or None when it is not one."""
        if not self.alive or self.rows < ID_MIN_ROWS:
            return None
        if self.text:
            return "every value is different (an id?); use it with --categorical if you mean it"
        low, high = int(self.seen[0]), int(self.seen[-1])
        if high - low + 1 == self.rows:
            how = f"the numbers {low}..{high} in some order"
        elif self.rising or self.falling:
            how = f"{'rising' if self.rising else 'falling'} in file order"
        else:
            return None
        return f"every value is different, {how} (a row index?); use it with --numeric or --categorical if you " \
               "mean it"


class _NumericStats:
    """Count of finite values, nulls (null or NaN), and moments (Chan et al.'s merge) of one column. Values
    past the range of dtype are left out like inf: the network reads them as inf (a bad value)."""

    def __init__(self, dtype):
        self.n, self.mean, self.m2, self.nulls, self.rows = 0, 0.0, 0.0, 0, 0
        self.limit = float(np.finfo(dtype).max)

    def add(self, arr):
        self.add_values(numbers(arr))

    def add_values(self, x):
        finite = np.abs(x) <= self.limit
        self.nulls += int(np.isnan(x).sum())
        self.rows += x.size
        x = x[finite]
        nb = x.size
        if nb == 0:
            return
        with np.errstate(over="ignore"):  # spreads near float64's range overflow M2: inverse_scale handles it
            mb = float(x.mean())
            m2b = float(((x - mb) ** 2).sum())
        n = self.n + nb
        d = mb - self.mean
        self.mean += d * nb / n
        self.m2 += m2b + d * d * self.n * nb / n
        self.n = n


def numbers(arr):
    """A numeric, boolean, decimal or temporal Arrow array as float64 numpy values, NaN where null."""
    arr = plain(arr)
    t = arr.type
    if is_temporal(t):
        arr = arr.cast(pa.int64()) if pa.types.is_timestamp(t) or pa.types.is_date64(t) else \
            arr.cast(pa.int32())
    if not pa.types.is_floating(arr.type) or arr.null_count:
        arr = arr.cast(pa.float64(), safe=False)  # integers past 2**53 are rounded, not refused
    if arr.null_count:
        arr = arr.fill_null(np.nan)
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.float64)


class _CategoryStats:
    """Value counts of one categorical column until TRACK_LIMIT distinct values, then only a lower bound."""

    def __init__(self):
        self.counts = {}
        self.nulls = self.rows = 0
        self.overflow = False

    def add(self, arr):
        arr = plain(arr)
        self.nulls += arr.null_count
        self.rows += len(arr)
        if self.overflow:
            return
        vc = pc.value_counts(arr.drop_null())
        for v, n in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()):
            self.counts[v] = self.counts.get(v, 0) + n
        if len(self.counts) > TRACK_LIMIT:
            self.overflow = True


def scan(source, label, choices, skip_bad=False, split=None):
    """The one pre-pass: the label vocabulary and every column's statistics, read together in one stream.
    Returns (LabelInfo, FeatureSpec). With skip_bad, null and NaN labels are left out (their rows are
    skipped later) instead of an error. With split = (fraction, False), what the model learns (vocabularies,
    fills, scaling, class counts) comes from the training side of that hash split only, the rows training
    reads; roles (an id column) and the classes are decided on every row."""
    check_unique_names(source)
    check_label_type(source, label)
    roles, ignored = candidate_roles(source, label, choices)
    check_schemas(source, [label, *roles])
    vectors = [n for n, r in roles.items() if r == "vector"]
    if vectors:
        labels = scan_labels(source, label, skip_bad, split)
        spec = FeatureSpec(ignored=ignored, input_column=vectors[0], vector_width=vector_width(source, vectors[0]))
        if choices.standardize:
            spec.mean, spec.inv_std = vector_scaler(source, spec, skip_bad, choices.dtype, split)
        return labels, spec
    explicit = set(choices.categorical) | set(choices.numeric) | set(choices.features or [])
    stats = {n: _NumericStats(choices.dtype) if r == "numeric" else _CategoryStats() for n, r in roles.items()}
    index = {n: _Index() for n in roles if n not in explicit and
             (is_text(value_type(source.schema.field(n).type)) or
              pa.types.is_integer(value_type(source.schema.field(n).type)))}
    counter = _LabelCounter(label, skip_bad)
    for f, row0, batch in source.batches([label, *roles], READ_ROWS):
        keep = split_side(f, row0, batch.num_rows, split)
        counter.add(f, row0, batch.column(0), keep)
        train = batch if keep is None else batch.filter(pa.array(keep))
        for i, name in enumerate(roles, start=1):
            stats[name].add(train.column(i))
            if name in index:
                index[name].add(plain(batch.column(i)))
    labels = counter.result(source, split)
    numeric, categorical = [], []
    for name, role in roles.items():
        s = stats[name]
        reason = index[name].reason() if name in index else None
        if reason:
            ignored.append(Ignored(name, reason))
        elif not (s.n if role == "numeric" else s.counts):
            ignored.append(Ignored(name, "always null" if s.nulls == s.rows else "no finite values"))
        elif role == "numeric":
            numeric.append(Numeric(name, s.mean, s.nulls > 0, s.nulls))
        else:
            categorical.append(categories(name, s, source.schema.field(name).type, choices))
    offset = 0
    for c in categorical:
        c.offset = offset
        offset += c.slots
    spec = FeatureSpec(numeric, categorical, ignored)
    if not numeric and not categorical:
        raise StreambpError(f"{where(source)} has no usable feature columns besides the label {label!r}: "
                            + "; ".join(f"{c.name}: {c.reason}" for c in ignored) + ".")
    if choices.standardize and numeric:
        spec.mean, spec.inv_std = scaler(spec, stats)
    return labels, spec


def categories(name, s, arrow_type, choices):
    """The Categorical for a column from its value counts and the vocabulary choices."""
    distinct = len(s.counts)
    vt = str(value_type(arrow_type))
    if choices.hash_buckets or s.overflow:
        return Categorical(name, None, vt, choices.hash_buckets or DEFAULT_BUCKETS, distinct=distinct,
                           nulls=s.nulls)
    frequent = sorted((v for v, n in s.counts.items() if n >= choices.min_frequency),
                      key=lambda v: (-s.counts[v], str(v)))[:choices.max_categories]
    return Categorical(name, sorted(frequent, key=str), vt, distinct=distinct, nulls=s.nulls)


def hash_input(arr, c):
    """The values of the hashed categorical column c to hash, read as the type it was trained on, so that a
    value lands in the bucket it trained in whatever type it comes as: integers and booleans of any width
    as they are (the hash reads them as int64), anything where c held text as its text, text or floats where
    c held integers or booleans cast to that type, and a value that does not cast a StreambpError."""
    trained = pa.type_for_alias(c.value_type)
    if is_text(trained):
        return arr if is_text(arr.type) else arr.cast(pa.string())
    if pa.types.is_integer(arr.type) or pa.types.is_boolean(arr.type):
        return arr
    try:
        return arr.cast(trained)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        value = next((v for v in arr.drop_null().to_pylist() if not casts(v, trained)), arr.type)
        raise StreambpError(f"Categorical column {c.name!r} holds {value!r}, which does not read as {trained}, the "
                            "type of the values its hash buckets were trained on; give the column as "
                            f"{trained} values (or train a model on it as it is).") from None


def casts(value, t):
    """Whether the Python value casts to the Arrow type t."""
    try:
        pa.scalar(value).cast(t)
        return True
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False


def vector_matrix(f, row0, arr, spec, skip_bad, dtype):
    """The rows of a list column as an [N, D] array of dtype (a view when the column holds dtype); a null
    list or value is an error naming the row, or with skip_bad a row of NaN (marking it bad)."""
    if arr.null_count and skip_bad:
        arr = arr.cast(float64_list(arr.type))  # integers cannot hold the NaN that marks the row bad
        arr = pc.coalesce(arr, pa.scalar([float("nan")] * spec.width, type=arr.type))
    values = arr.flatten()
    if values.null_count and skip_bad:
        values = values.cast(pa.float64(), safe=False).fill_null(np.nan)
    if arr.null_count or values.null_count:
        bad = arr if arr.null_count else values
        raise StreambpError(f"{f}: column {spec.input_column!r} holds a null "
                            f"(row {row0 + null_row(bad) // (1 if arr.null_count else spec.width)}).")
    if not pa.types.is_fixed_size_list(arr.type):
        lengths = pc.list_value_length(arr).to_numpy()
        if (lengths != spec.width).any():
            i = int(np.flatnonzero(lengths != spec.width)[0])
            raise StreambpError(f"{f}: column {spec.input_column!r} has {lengths[i]} values in row {row0 + i}, "
                                f"expected {spec.width}.")
    return values.to_numpy(zero_copy_only=False).astype(dtype, copy=False).reshape(-1, spec.width)


def float64_list(t):
    """The list type t with float64 values (the same kind of list, and size if fixed)."""
    if pa.types.is_fixed_size_list(t):
        return pa.list_(pa.float64(), t.list_size)
    return pa.large_list(pa.float64()) if pa.types.is_large_list(t) else pa.list_(pa.float64())


def vector_scaler(source, spec, skip_bad, dtype, split=None):
    """(mean [D], inv_std [D]) of the values of a list column, by the same merge of per-batch moments, over
    the rows training reads: the side of the split that `split` keeps, without the rows that hold a value
    that is null, NaN or infinite in dtype (bad rows)."""
    stats = [_NumericStats(dtype) for _ in range(spec.width)]
    limit = float(np.finfo(dtype).max)
    for f, row0, batch in source.batches([spec.input_column], READ_ROWS):
        values = vector_matrix(f, row0, batch.column(0), spec, skip_bad, np.float64)
        keep = split_side(f, row0, len(values), split)
        usable = (np.abs(values) <= limit).all(axis=1)
        values = values[usable if keep is None else usable & keep]
        for j, s in enumerate(stats):
            s.add_values(values[:, j])
    return inverse_scale([s.mean for s in stats], stats)


def inverse_scale(mean, stats):
    """inv_std from the moments; a constant input gets 1, so it maps to 0, and so does a spread too wide to
    measure in float64 (an infinite M2 would give inv_std 0, which no model may hold)."""
    std = [np.sqrt(s.m2 / s.n) if s.n else 0.0 for s in stats]
    return np.array(mean), np.array([1.0 / d if np.isfinite(d) and d > 1e-12 * max(abs(m), 1.0) else 1.0
                                     for m, d in zip(mean, std)])


def scaler(spec, stats):
    """(mean [D], inv_std [D]) over the numeric inputs: the columns' moments; indicators stay 0/1. A
    constant column gets inv_std 1, so it maps to 0."""
    mean, inv = inverse_scale([stats[c.name].mean for c in spec.numeric], [stats[c.name] for c in spec.numeric])
    k = len(spec.indicators)
    return np.concatenate([mean, np.zeros(k)]), np.concatenate([inv, np.ones(k)])


class _LabelCounter:
    """The classes (of every row: training refuses a label outside them on either side of a split) and the
    count of each among the rows kept."""

    def __init__(self, label, skip_bad):
        self.label, self.skip_bad = label, skip_bad
        self.counts, self.classes, self.rows, self.type = {}, set(), 0, None

    def add(self, f, row0, arr, keep=None):
        arr = plain(arr)
        self.type = arr.type
        if pa.types.is_floating(arr.type):
            arr = pc.if_else(pc.is_nan(arr), pa.scalar(None, arr.type), arr)
        if arr.null_count and not self.skip_bad:
            raise StreambpError(f"{f}: label column {self.label!r} is null or NaN in row {row0 + null_row(arr)}.")
        if keep is not None:
            self.classes.update(pc.unique(arr.drop_null()).to_pylist())
            arr = arr.filter(pa.array(keep))
        arr = arr.drop_null()
        vc = pc.value_counts(arr)
        for v, c in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()):
            self.counts[v] = self.counts.get(v, 0) + c
        self.rows += len(arr)

    def result(self, source, split=None):
        if self.rows == 0 and split:
            raise StreambpError(f"No training rows are left in {where(source)} after the validation split; give "
                                f"more rows or a smaller --val-fraction (now {split[0]}).")
        if self.rows == 0:
            raise StreambpError(f"{where(source)} has no rows.")
        classes = sorted(self.classes | set(self.counts))
        if len(classes) < 2:
            raise StreambpError(f"Label column {self.label!r} of {where(source)} has a single class "
                                f"({classes[0]!r}); a classifier needs at least two.")
        return LabelInfo(classes, str(self.type), [self.counts.get(c, 0) for c in classes], self.rows)


def check_label_type(source, label):
    require_column(source, label, "label")
    t = value_type(source.schema.field(label).type)
    if not (is_numeric(t) or is_text(t) or pa.types.is_boolean(t)) or pa.types.is_float16(t):
        raise StreambpError(f"{source.files[0]}: label column {label!r} has type {t}; labels must be integers, "
                            "strings, booleans or floating-point class codes.")


def scan_labels(source, label, skip_bad=False, split=None):
    """A pass over the label column alone: the class vocabulary (sorted), counts and row count (of the side
    of the split that `split` keeps)."""
    check_unique_names(source)
    check_label_type(source, label)
    counter = _LabelCounter(label, skip_bad)
    for f, row0, batch in source.batches([label], READ_ROWS):
        counter.add(f, row0, batch.column(0), split_side(f, row0, batch.num_rows, split))
    return counter.result(source, split)
