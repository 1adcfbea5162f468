"""streambp: train fully-connected networks on datasets larger than memory, on ordinary CPUs."""
import pluggy

from . import threads

threads.select_layer()

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("streambp")

from .model import Model, load  # noqa: E402

__all__ = ["Model", "__version__", "hookimpl", "load"]
