"""Run configuration files: TOML whose keys are FitConfig's fields; flags given on the command line win.

`streambp fit` writes the resolved configuration of every run next to the model (<model>.config.toml),
and `streambp fit --config that.toml` runs it again.
"""
import json
import math
import os
from dataclasses import asdict, fields

from .atomic import atomic_path
from .errors import StreambpError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

DEFAULT_HIDDEN = (128,)  # hidden layer sizes when neither --hidden nor an --init model gives them


def field_names():
    from .train import FitConfig

    return [f.name for f in fields(FitConfig)]


def read_config(path):
    """The settings of a TOML run file, keys as FitConfig field names (dashes may stand for underscores)."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise StreambpError(f"Config file {path} does not exist.") from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise StreambpError(f"Cannot read config file {path}: {e}.") from None
    values = {k.replace("-", "_"): v for k, v in raw.items()}
    unknown = sorted(set(values) - set(field_names()))
    if unknown:
        raise StreambpError(f"Config file {path} has unknown settings {', '.join(unknown)}; the settings are: "
                            f"{', '.join(field_names())}.")
    return values


def merge(file_values, cli_values, given):
    """cli_values where the flag was given on the command line (dict settings merged key by key), else
    file_values, else cli_values (the defaults)."""
    merged = {**cli_values, **file_values}
    for key in given:
        old = file_values.get(key)
        merged[key] = {**old, **cli_values[key]} if isinstance(old, dict) else cli_values[key]
    return merged


def config_path(model_path):
    return os.path.splitext(os.fspath(model_path))[0] + ".config.toml"


def _toml(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON's string escapes are valid TOML basic-string escapes
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items() if v is not None) + "}"
    raise TypeError(f"cannot write {value!r} to TOML")


def write_config(config, path):
    """Write a FitConfig as TOML, atomically; settings that are None are left out, and so are resume and
    run_dir: a run started from the file gets a run directory of its own."""
    lines = ["# streambp fit --config this-file  (flags given on the command line override these)"]
    lines += [f"{k} = {_toml(v)}" for k, v in asdict(config).items()
              if v is not None and k not in ("resume", "run_dir")]
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
