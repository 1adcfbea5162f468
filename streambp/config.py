"""The settings of a fit: FitConfig, their validation, TOML run files, and a memory estimate.

Every setting is a field of FitConfig; its annotation is the type a value must have, whether it comes
from the Python API or from a TOML run file (keys are the field names; dashes may stand for underscores).
`streambp fit` writes the resolved settings of every run next to the model (<model>.config.toml), and
`streambp fit --config that.toml` runs them again, with the flags given on the command line winning.
"""
import dataclasses
import json
import math
import os
import reprlib
import types
import typing
from dataclasses import asdict, dataclass, field

from .atomic import atomic_path, current
from .errors import StreambpError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

DEFAULT_HIDDEN = (128,)

Scalar = bool | int | float | str  # the values of the dict settings (hyper-parameters, source options, ...)


@dataclass
class FitConfig:
    """Everything `streambp fit` needs; the CLI builds one from its options. Values of the wrong type are
    refused on construction (a StreambpError naming the setting)."""

    data: str
    label: str = "label"
    features: list[str] | None = None
    ignore: list[str] = field(default_factory=list)  # columns never used as features
    categorical: list[str] = field(default_factory=list)  # columns read as categories (e.g. integer codes)
    numeric: list[str] = field(default_factory=list)  # columns read as numbers whatever their type
    max_categories: int = 1000  # vocabulary cap of a categorical column (rarer values share "other")
    min_frequency: int = 1  # values seen fewer times share the "other" slot
    hash_buckets: int = 0  # hash categorical values into this many slots instead (0: off)
    hidden: list[int] | None = None  # None: DEFAULT_HIDDEN, or the --init model's; [] is softmax regression
    epochs: int | None = None  # None: auto (train.auto_epochs), stopping once the training loss settles
    batch_size: int | None = None  # None: train.auto_batch(training rows)
    lr: float = 0.01  # with adam; the seed's plain SGD is --optimizer sgd --lr 0.1
    seed: int = 0
    threads: int | None = None
    val: str | None = None
    val_fraction: float = 0.0  # hold out this fraction of the rows of data, by a hash of (file, row)
    standardize: bool = True
    class_weight: str | list[float] | None = None  # "balanced", or one weight per class in class order
    run_dir: str | None = None  # checkpoints, config.toml and events.jsonl; default runs/<model>-<time>; "none": no
    resume: str | None = None  # continue from the newest checkpoint in this run directory
    checkpoint_every: str = "10m"  # also: N steps, Ns/Nm/Nh, or "epoch"; a checkpoint ends every epoch too
    keep_checkpoints: int = 3
    deterministic: bool = False  # fixed thread counts, so that a resumed run is bit-identical
    early_stopping: int = 0  # stop after this many epochs without a lower validation loss (0: never)
    on_bad_rows: str = "error"  # or "skip": drop rows with null, NaN or inf values, and count them
    bad_rows_out: str | None = None  # with "skip": write the dropped rows here (Parquet)
    init: str | None = None
    out: str | None = "model.npz"
    optimizer: str = "adam"  # chosen on real tables: benchmarks/bench_tables.py, README
    optimizer_params: dict[str, Scalar] = field(default_factory=dict)  # hyper-parameters, e.g. {"momentum": 0.9}
    lr_schedule: str = "cosine"  # see streambp/schedules.py; chosen on real tables (benchmarks/README.md)
    lr_schedule_params: dict[str, Scalar] = field(default_factory=dict)  # e.g. {"gamma": 0.5}
    warmup_steps: int = 0
    loggers: list[str] = field(default_factory=lambda: ["console"])
    shuffle: bool = True
    buffer_rows: int = 16384
    prefetch: int = 1
    cache: str = "auto"  # decoded rows for later epochs: "auto" (streambp.cache.default_root(), within a disk
    # budget), "none", or a directory
    source: str | None = None
    source_options: dict[str, Scalar] = field(default_factory=dict)  # for the source, e.g. {"delimiter": ";"}
    dtype: str = "float32"
    engine: str = "local"
    engine_options: dict[str, Scalar] = field(default_factory=dict)  # e.g. {"workers": 2, "sync_every": 1}

    def __post_init__(self):
        hints = typing.get_type_hints(FitConfig)
        for f in dataclasses.fields(self):  # a path may be given as a pathlib.Path
            if isinstance(getattr(self, f.name), os.PathLike) and _accepts(hints[f.name], ""):
                setattr(self, f.name, os.fspath(getattr(self, f.name)))
        check_types({f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, "FitConfig")


def field_names():
    return [f.name for f in dataclasses.fields(FitConfig)]


# ---------------------------------------------------------------------------------------------- types


def _accepts(tp, value):
    """Whether value has type tp: bool is not a number, an int is a float, lists hold elements of tp's."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(a, value) for a in args)
    if tp is type(None):
        return value is None
    if tp in (int, float):
        return isinstance(value, int if tp is int else (int, float)) and not isinstance(value, bool)
    if origin is list:
        return isinstance(value, (list, tuple)) and all(_accepts(args[0], v) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) and _accepts(args[1], v) for k, v in value.items())
    return isinstance(value, tp)


NAMES = {bool: ("true or false", "true or false values"), int: ("an integer", "integers"),
         float: ("a number", "numbers"), str: ("a string", "strings"), type(None): ("", "")}


def _describe(tp, plural=False):
    """'a list of strings', 'a string or a list of numbers', ... (None is left out: TOML has no null)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp == Scalar:
        return "values (numbers, strings, true or false)" if plural else "a value (a number, string, true or false)"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(d for d in (_describe(a, plural) for a in args) if d)
    if origin is list:
        return ("lists of " if plural else "a list of ") + _describe(args[0], True)
    if origin is dict:
        return ("tables of " if plural else "a table of ") + _describe(args[1], True)
    return NAMES[tp][plural]


def _kind(value):
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
            tuple: "a list", dict: "a table"}.get(type(value), type(value).__name__)


SHORT = reprlib.Repr()  # values in messages: a nested or long one is cut short
SHORT.maxlevel, SHORT.maxstring, SHORT.maxother = 2, 60, 60
EXAMPLES = {str: "text", int: 1, float: 0.5, bool: True, list[str]: ["a", "b"], list[int]: [256, 128],
            list[float]: [1.0, 2.0], dict[str, Scalar]: {"key": 1}}


def _example(key, tp):
    """The field's default, else a value of its type, as TOML (`key = value`)."""
    f = next(f for f in dataclasses.fields(FitConfig) if f.name == key)
    value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if value in (None, dataclasses.MISSING, [], {}):
        union = typing.get_origin(tp) in (typing.Union, types.UnionType)
        value = EXAMPLES[[a for a in typing.get_args(tp) if a is not type(None)][-1] if union else tp]
    return f"{key} = {toml_value(value)}"


def check_types(values, origin):
    """Refuse a setting whose value is not of its FitConfig annotation's type: one paragraph naming the
    setting, where it comes from (origin), the type it takes and the value given. Nested values are
    refused at their first level, so any depth is checked at once."""
    hints = typing.get_type_hints(FitConfig)
    for key, value in values.items():
        tp = hints[key]
        if not _accepts(tp, value):
            shown = toml_value(value) if isinstance(value, (bool, int, float, str)) else SHORT.repr(value)
            raise StreambpError(f"{origin}: the setting {key} takes {_describe(tp)}, got {shown} "
                                f"({_kind(value)}). Give it as {_describe(tp)}, e.g. {_example(key, tp)}.")


def toml_value(value):
    """A simple value as written in TOML: '"a"', '[1, 2]', 'true', '{key = 1}' (for messages)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


# ---------------------------------------------------------------------------------------------- values


def check_config(c):
    """Refuse settings out of their range, one paragraph naming the option and what it takes."""
    for name, low in (("epochs", 0), ("batch_size", 1), ("buffer_rows", 1), ("prefetch", 0), ("keep_checkpoints", 1),
                      ("seed", 0), ("warmup_steps", 0), ("max_categories", 1), ("min_frequency", 1)):
        if getattr(c, name) is not None and getattr(c, name) < low:
            raise StreambpError(f"--{name.replace('_', '-')} must be at least {low}, got {getattr(c, name)}.")
    if c.threads is not None and c.threads < 1:
        raise StreambpError(f"--threads must be at least 1, got {c.threads}.")
    if not (c.lr > 0 and math.isfinite(c.lr)):
        raise StreambpError(f"--lr must be a positive finite number, got {c.lr}; try 0.1.")
    if c.hash_buckets < 0 or c.hash_buckets == 1:
        raise StreambpError(f"--hash-buckets takes 0 (off) or a number of slots of at least 2, got {c.hash_buckets}.")
    if c.on_bad_rows not in ("error", "skip"):
        raise StreambpError(f"--on-bad-rows takes error or skip, got {c.on_bad_rows!r}.")
    if c.bad_rows_out and c.on_bad_rows != "skip":
        raise StreambpError("--bad-rows-out needs --on-bad-rows skip.")
    if c.early_stopping < 0 or (c.early_stopping and not (c.val or c.val_fraction)):
        raise StreambpError("--early-stopping takes a positive patience and needs --val or --val-fraction.")
    if not 0 <= c.val_fraction < 1:
        raise StreambpError(f"--val-fraction must be in [0, 1), got {c.val_fraction}.")
    if not (isinstance(c.cache, str) and c.cache.strip()):
        raise StreambpError(f"--cache takes auto, none or a directory, got {c.cache!r}.")
    if c.val_fraction and c.val:
        raise StreambpError("Give either --val or --val-fraction, not both.")
    if c.hidden is not None and any(h < 1 for h in c.hidden):
        raise StreambpError(f"--hidden sizes must be positive (or 0 alone, for no hidden layer), got {c.hidden}.")
    roles = {"--ignore": c.ignore, "--categorical": c.categorical, "--numeric": c.numeric}
    for a, b in (("--ignore", "--categorical"), ("--ignore", "--numeric"), ("--categorical", "--numeric")):
        both = [col for col in roles[a] if col in roles[b]]
        if both:
            raise StreambpError(f"Column {both[0]!r} is named in both {a} and {b}; a column has one role. Remove it "
                                "from one of them.")
    from .schedules import make_schedule

    make_schedule(c.lr_schedule, c.lr, 1, 1, c.warmup_steps, **c.lr_schedule_params)  # checks its parameters


# ---------------------------------------------------------------------------------------------- memory


def available_memory():
    """Bytes the system can give this process without swapping: MemAvailable, else free pages; None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_needed(c, sizes, parameter_arrays, slots=0):
    """Bytes still to allocate for a fit of a network of layer sizes `sizes`, by the option that drives each
    part: --hidden: `parameter_arrays` arrays of the parameters' size (theta, its gradient); --batch-size: the
    activations and errors of a minibatch; --buffer-rows: (prefetch + 3) decoded buffers of rows;
    --hash-buckets / --max-categories: the embedding table of `slots` categorical slots with an optimizer state
    of two tables (Adam's). The dense layers' optimizer state (0 to 2 more arrays of their size) comes on top."""
    import numpy as np

    item = np.dtype(c.dtype).itemsize
    params = sum((sizes[i] + 1) * sizes[i + 1] for i in range(len(sizes) - 1))
    buffer_rows = max(c.batch_size, c.buffer_rows // c.batch_size * c.batch_size)
    return {"--hidden": params * parameter_arrays * item,
            "--batch-size": 2 * c.batch_size * sum(sizes[1:]) * item,
            "--buffer-rows": (c.prefetch + 3) * buffer_rows * (sizes[0] * item + 4),
            CATEGORIES[bool(c.hash_buckets)]: slots * sizes[1] * 3 * item}


CATEGORIES = {False: "--max-categories", True: "--hash-buckets"}  # the option that sizes the embedding table


def check_memory(c, sizes, parameter_arrays, slots=0):
    """Refuse a fit whose estimated memory (memory_needed) exceeds what the machine has available, naming the
    option that drives the largest part."""
    parts = memory_needed(c, sizes, parameter_arrays, slots)
    free = available_memory()
    total = sum(parts.values())
    if free is None or total <= free:
        return
    option = max(parts, key=parts.get)
    value = {"--hidden": ",".join(map(str, sizes[1:-1])) or "0", "--batch-size": c.batch_size,
             "--buffer-rows": c.buffer_rows, "--max-categories": c.max_categories,
             "--hash-buckets": c.hash_buckets}[option]
    raise StreambpError(f"This fit needs about {total / 2**30:,.1f} GiB of memory, {parts[option] / 2**30:,.1f} GiB "
                        f"of it for {option} {value}, and the machine has {free / 2**30:,.1f} GiB available. "
                        f"Choose a smaller {option}.")


# ---------------------------------------------------------------------------------------------- files


def read_config(path):
    """The settings of a TOML run file, keys as FitConfig field names (dashes may stand for underscores),
    each value checked against the field's type."""
    current().protect(path, "the --config file")
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise StreambpError(f"Config file {path} does not exist.") from None
    except RecursionError:
        raise StreambpError(f"Cannot read config file {path}: its values are nested too deeply. A setting is a "
                            "value, a list of values or a table of values.") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise StreambpError(f"Cannot read config file {path}: {e}.") from None
    values = {k.replace("-", "_"): v for k, v in raw.items()}
    unknown = sorted(set(values) - set(field_names()))
    if unknown:
        raise StreambpError(f"Config file {path} has unknown settings {', '.join(unknown)}; the settings are: "
                            f"{', '.join(field_names())}.")
    check_types(values, f"Config file {path}")
    return values


def config_path(model_path):
    return os.path.splitext(os.fspath(model_path))[0] + ".config.toml"


def write_config(config, path, role="the config file", fix=None):
    """Write a FitConfig as TOML, atomically; settings that are None are left out, and so are resume and
    run_dir: a run started from the file gets a run directory of its own."""
    import tomli_w

    values = {k: v for k, v in asdict(config).items() if v is not None and k not in ("resume", "run_dir")}
    with atomic_path(path, role, fix) as tmp:
        with open(tmp, "wb") as f:
            f.write(b"# streambp fit --config this-file  (flags given on the command line override these)\n")
            tomli_w.dump(values, f)
