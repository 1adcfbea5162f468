"""streambp: train fully-connected networks on datasets larger than memory, on ordinary CPUs.

Importing streambp is light (no Numba, no plugin manager): Model and load are imported on first use."""
import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("streambp")

__all__ = ["Model", "__version__", "hookimpl", "load"]


def __getattr__(name):
    if name in ("Model", "load"):
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module 'streambp' has no attribute {name!r}")
