"""The plugin manager: built-in plugins plus the "streambp" entry-point group, and the registries.

Installed plugins are found through the "streambp" entry-point group. STREAMBP_LOAD_PLUGINS, when set,
limits which of them load: a comma-separated list of distribution or entry-point names (an empty string
loads none). The built-in plugins always load.

Errors: an exception other than StreambpError raised by a third-party plugin (in a hook, in a registered
factory, or in a logger's methods) is re-raised as a StreambpError naming the plugin, with the original
exception as its __cause__. Errors in the built-in plugins are streambp bugs and keep their traceback.
"""
import functools
import importlib
import importlib.metadata
import os
import re

import pluggy

from . import hookspecs
from .errors import StreambpError

DEFAULT_PLUGINS = (
    "streambp.default_plugins.optimizers",
    "streambp.default_plugins.loggers",
    "streambp.default_plugins.sources",
    "streambp.default_plugins.engines",
)
ENTRY_POINT_GROUP = "streambp"
LOAD_PLUGINS_ENV = "STREAMBP_LOAD_PLUGINS"

# Logger method called by train.emit() for each event, and the plugin hook called with it.
LIFECYCLE_HOOKS = {"fit_start": "fit_start", "step": "step_end", "epoch_end": "epoch_end",
                   "fit_end": "fit_end"}


def _normalise(name):
    """A distribution or entry-point name compared as PEP 503 does: case and runs of -_. ignored."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _wanted_plugins():
    """The set of normalised names STREAMBP_LOAD_PLUGINS allows, or None when it is not set."""
    value = os.environ.get(LOAD_PLUGINS_ENV)
    if value is None:
        return None
    return {_normalise(n.strip()) for n in value.split(",") if n.strip()}


def load_entrypoint_plugins(pm):
    """Register the "streambp" entry points of installed distributions that STREAMBP_LOAD_PLUGINS allows.

    Returns {plugin name: {"distribution": name, "version": version}} for those loaded.
    """
    wanted = _wanted_plugins()
    loaded = {}
    if wanted is not None and not wanted:
        return loaded
    for dist in list(importlib.metadata.distributions()):
        dist_name = (dist.metadata["Name"] if dist.metadata else None) or ""
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP or pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
                continue
            if wanted is not None and not {_normalise(ep.name), _normalise(dist_name)} & wanted:
                continue
            try:
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
            except Exception as e:
                origin = dist_name or "an unnamed distribution"
                raise StreambpError(
                    f"Cannot load the plugin {ep.name!r} (entry point {ep.value} of {origin}): "
                    f"{_describe_error(e)}. Uninstall it, or set {LOAD_PLUGINS_ENV} to the plugins to load "
                    "(an empty value loads none).") from e
            loaded[ep.name] = {"distribution": dist_name, "version": dist.version}
    return loaded


@functools.cache
def get_plugin_manager():
    """The process-wide plugin manager, with built-ins and installed plugins loaded."""
    pm = pluggy.PluginManager("streambp")
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    pm.streambp_distributions = load_entrypoint_plugins(pm)
    return pm


def reset_plugin_manager():
    """Forget the plugin manager; the next get_plugin_manager() builds a new one (reading
    STREAMBP_LOAD_PLUGINS and the installed entry points again). Plugins registered by hand are dropped."""
    get_plugin_manager.cache_clear()


def is_builtin(plugin_name):
    return plugin_name in DEFAULT_PLUGINS


def _describe_error(e):
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _culprit(exc, impls):
    """The name of the plugin whose hook implementation raised exc (innermost in its traceback), or None."""
    codes = {}
    for impl in impls:
        code = getattr(impl.function, "__code__", None)
        if code is not None:
            codes[code] = impl.plugin_name
    found = None
    tb = exc.__traceback__
    while tb is not None:
        found = codes.get(tb.tb_frame.f_code, found)
        tb = tb.tb_next
    return found


def call_hook(name, **kwargs):
    """Call the hook `name` on every plugin; a third-party plugin's exception becomes a StreambpError."""
    caller = getattr(get_plugin_manager().hook, name)
    try:
        return caller(**kwargs)
    except StreambpError:
        raise
    except Exception as e:
        impls = caller.get_hookimpls()
        culprit = _culprit(e, impls)
        if culprit is None:
            suspects = [i.plugin_name for i in impls if not is_builtin(i.plugin_name)]
            if not suspects:
                raise
            raise StreambpError(f"A plugin failed in its {name} hook ({' or '.join(map(repr, suspects))}): "
                                f"{_describe_error(e)}") from e
        if is_builtin(culprit):
            raise
        raise StreambpError(f"The plugin {culprit!r} failed in its {name} hook: {_describe_error(e)}") from e


class Registry:
    """Names registered through one registration hook, each mapped to its factory (and extras)."""

    def __init__(self, kind, hook_name):
        self.kind = kind
        self.hook_name = hook_name

    def owned_entries(self):
        """{name: (plugin name, (factory, *extras))}, calling each plugin's registration hook."""
        found = {}
        caller = getattr(get_plugin_manager().hook, self.hook_name)
        # Called one implementation at a time (in pluggy's order) to know which plugin registers what.
        for impl in reversed(caller.get_hookimpls()):
            if impl.hookwrapper or impl.wrapper:
                continue
            owner = impl.plugin_name

            def register(name, factory, *extra, owner=owner):
                if name in found:
                    raise StreambpError(f"Two plugins register the {self.kind} {name!r}: "
                                        f"{found[name][0]!r} and {owner!r}.")
                if not callable(factory):
                    raise StreambpError(f"The plugin {owner!r} registers the {self.kind} {name!r} with "
                                        f"{factory!r}, which is not callable.")
                found[name] = (owner, (factory, *extra))

            kwargs = {"register": register}
            try:
                impl.function(*[kwargs[a] for a in impl.argnames])
            except StreambpError:
                raise
            except Exception as e:
                if is_builtin(owner):
                    raise
                raise StreambpError(f"The plugin {owner!r} failed in its {self.hook_name} hook: "
                                    f"{_describe_error(e)}") from e
        return found

    def entries(self):
        """{name: (factory, *extras)}; a third-party factory is wrapped to name its plugin on errors."""
        return {name: (_named_factory(self.kind, name, owner, entry[0]), *entry[1:])
                for name, (owner, entry) in self.owned_entries().items()}

    def get(self, name):
        entries = self.entries()
        if name not in entries:
            raise StreambpError(f"Unknown {self.kind} {name!r}. Available: {', '.join(sorted(entries))}.")
        return entries[name]

    def owner(self, name):
        """The name of the plugin that registers `name`, or None."""
        entry = self.owned_entries().get(name)
        return entry[0] if entry else None


def _named_factory(kind, name, owner, factory):
    """factory itself for a built-in plugin; otherwise a wrapper turning its errors into StreambpError."""
    if is_builtin(owner):
        return factory

    @functools.wraps(factory)
    def build(*args, **kwargs):
        try:
            return factory(*args, **kwargs)
        except StreambpError:
            raise
        except Exception as e:
            raise StreambpError(f"The {kind} {name!r} from the plugin {owner!r} failed: "
                                f"{_describe_error(e)}") from e

    return build


optimizers = Registry("optimizer", "register_optimizers")
loggers = Registry("logger", "register_loggers")
sources = Registry("source", "register_sources")
engines = Registry("engine", "register_engines")


def _logger_owner(log):
    """(logger name, plugin name) for a logger object, when it can be traced to a registration."""
    module = type(log).__module__
    by_module = None
    for name, (owner, (factory, *_)) in loggers.owned_entries().items():
        if isinstance(factory, type) and isinstance(log, factory):
            return name, owner
        plugin = get_plugin_manager().get_plugin(owner)
        plugin_module = getattr(plugin, "__name__", None) or type(plugin).__module__
        if by_module is None and plugin_module and (module == plugin_module
                                                     or module.startswith(plugin_module + ".")):
            by_module = name, owner
    return by_module or (type(log).__qualname__, None)


def emit_event(logs, event, info):
    """Call `event` ("fit_start", "step", "epoch_end" or "fit_end") on each logger, then the matching
    plugin hook (fit_start, step_end, epoch_end, fit_end) with info."""
    for log in logs:
        method = getattr(log, event, None)
        if method is None:
            continue
        try:
            method(info)
        except StreambpError:
            raise
        except Exception as e:
            name, owner = _logger_owner(log)
            if owner is None or is_builtin(owner):
                raise
            raise StreambpError(f"The logger {name!r} from the plugin {owner!r} failed in {event}: "
                                f"{_describe_error(e)}") from e
    call_hook(LIFECYCLE_HOOKS[event], info=info)


def describe_plugins():
    """[{name, version?, distribution?, hooks, registers: {kind: [names]}}] for every loaded plugin."""
    from . import __version__

    pm = get_plugin_manager()
    dists = getattr(pm, "streambp_distributions", {})
    owned = {registry.kind: registry.owned_entries() for registry in (optimizers, loggers, sources, engines)}
    out = []
    order = {name: i for i, name in enumerate(DEFAULT_PLUGINS)}
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda p: (order.get(p[0], len(order)), p[0])):
        if plugin is None:  # blocked
            continue
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        registers = {}
        for kind, entries in owned.items():
            names = [n for n, (owner, _) in entries.items() if owner == name]
            if names:
                registers[kind] = names
        entry = {"name": name, "hooks": hooks, "registers": registers}
        if is_builtin(name):
            entry.update(distribution="streambp", version=__version__)
        elif name in dists:
            entry.update(dists[name])
        elif isinstance(getattr(plugin, "__version__", None), str):
            entry["version"] = plugin.__version__
        out.append(entry)
    return out
