"""The plugin manager: built-in plugins plus the "streambp" entry-point group, and the registries."""
import functools
import importlib

import pluggy

from . import hookspecs
from .errors import StreambpError

DEFAULT_PLUGINS = (
    "streambp.default_plugins.optimizers",
    "streambp.default_plugins.loggers",
    "streambp.default_plugins.sources",
)


@functools.cache
def get_plugin_manager():
    """The process-wide plugin manager, with built-ins and installed plugins loaded."""
    pm = pluggy.PluginManager("streambp")
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    pm.load_setuptools_entrypoints("streambp")
    return pm


class Registry:
    """Names registered through one registration hook, each mapped to its factory (and extras)."""

    def __init__(self, kind, hook_name):
        self.kind = kind
        self.hook_name = hook_name

    def entries(self):
        found = {}

        def register(name, factory, *extra):
            if name in found:
                raise StreambpError(f"Two plugins register the {self.kind} {name!r}.")
            found[name] = (factory, *extra)

        getattr(get_plugin_manager().hook, self.hook_name)(register=register)
        return found

    def get(self, name):
        entries = self.entries()
        if name not in entries:
            raise StreambpError(f"Unknown {self.kind} {name!r}. Available: {', '.join(sorted(entries))}.")
        return entries[name]


optimizers = Registry("optimizer", "register_optimizers")
loggers = Registry("logger", "register_loggers")
sources = Registry("source", "register_sources")


def describe_plugins():
    """[{name, version?, hooks, registers: {kind: [names]}}] for every loaded plugin."""
    pm = get_plugin_manager()
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    out = []
    for plugin in pm.get_plugins():
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        registers = {}
        for registry in (optimizers, loggers, sources):
            if registry.hook_name in hooks:
                names = []
                getattr(plugin, registry.hook_name)(register=lambda name, *rest, names=names: names.append(name))
                registers[registry.kind] = names
        entry = {"name": pm.get_name(plugin), "hooks": hooks, "registers": registers}
        if id(plugin) in dists:
            entry["version"] = dists[id(plugin)].version
        out.append(entry)
    return out
