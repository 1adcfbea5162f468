"""streambp-dask: the `dask` training engine, `streambp fit DATA --engine dask --scheduler tcp://HOST:PORT`
(or `--workers N` for a local cluster); see engine.py."""
from streambp import hookimpl

from .engine import DaskEngine

__version__ = "0.1.0"


@hookimpl
def register_engines(register):
    register("dask", DaskEngine)
