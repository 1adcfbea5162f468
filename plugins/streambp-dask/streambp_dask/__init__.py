"""streambp-dask: the `dask` training engine, `streambp fit DATA --engine dask --scheduler tcp://HOST:PORT`
(or `--workers N` for a local cluster); see engine.py."""
from streambp import hookimpl

__version__ = "0.1.0"


def dask_engine(run, scheduler=None, workers=None, sync_every=1):
    """engine.DaskEngine, imported when a fit asks for it (it loads Dask and streambp's training modules)."""
    from .engine import DaskEngine

    return DaskEngine(run, scheduler=scheduler, workers=workers, sync_every=sync_every)


@hookimpl
def register_engines(register):
    register("dask", dask_engine)
