"""The plugin manager: the built-in plugins plus the "streambp" entry-point group, loaded with pluggy's
own loader, and the one way to blame a plugin for an error.

Installed plugins are found through the "streambp" entry-point group. STREAMBP_LOAD_PLUGINS, when set,
limits which of them load: a comma-separated list of distribution or entry-point names (an empty string
loads none). The built-in plugins always load.

A plugin that cannot be loaded (its import raises anything, SystemExit included; a hook implementation
pluggy rejects; a hook name no hookspec has, such as register_optimisers) is left out: one warning line
on stderr names it, and `streambp plugins` lists it as failed with the reason.

Errors: an exception other than StreambpError raised by a third-party plugin (in a hook, in a registered
factory, or in a logger's methods) is re-raised by blame() as a StreambpError naming the plugin, with the
original exception as its __cause__. Errors in the built-in plugins are streambp bugs and keep their
traceback.
"""
import contextlib
import functools
import importlib
import importlib.metadata
import os
import re
import sys

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


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, plus what streambp keeps per manager: the plugins that failed to load and the
    registry hooks' registrations (cached; any register or unregister clears them)."""

    def __init__(self):
        super().__init__("streambp")
        self.failed = []  # [{"name", "distribution", "version", "error"}]
        self.registrations = {}  # registry hook name -> {name: (plugin name, (factory, *extras))}

    def register(self, plugin, name=None):
        self.registrations.clear()
        return super().register(plugin, name)

    def unregister(self, plugin=None, name=None):
        self.registrations.clear()
        return super().unregister(plugin, name)

    def distributions(self):
        """{plugin name: {"distribution": name, "version": version}} for the entry-point plugins loaded."""
        names = {id(plugin): name for name, plugin in self.list_name_plugin()}
        return {names[id(plugin)]: {"distribution": dist.project_name, "version": dist.version}
                for plugin, dist in self.list_plugin_distinfo() if id(plugin) in names}


def _normalise(name):
    """A distribution or entry-point name compared as PEP 503 does: case and runs of -_. ignored."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _wanted_plugins():
    """The set of normalised names STREAMBP_LOAD_PLUGINS allows, or None when it is not set."""
    value = os.environ.get(LOAD_PLUGINS_ENV)
    if value is None:
        return None
    return {_normalise(n.strip()) for n in value.split(",") if n.strip()}


def describe_error(e):
    """'ValueError: the message' on one line."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _entry_points():
    """(entry point, distribution name, version) of the "streambp" group, the first of each name (as
    pluggy's loader takes them); only these distributions' metadata is read."""
    seen = set()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in seen:
            seen.add(ep.name)
            dist = ep.dist
            yield ep, (dist.name if dist is not None else None) or "", dist.version if dist is not None else None


def load_entrypoint_plugins(pm):
    """Register, one at a time with pluggy's loader, the entry points STREAMBP_LOAD_PLUGINS allows; record
    each that fails in pm.failed (with a warning on stderr) and leave it out."""
    wanted = _wanted_plugins()
    if wanted is not None and not wanted:
        return
    failures = []
    origin = {}
    for ep, dist_name, version in _entry_points():
        if wanted is not None and not {_normalise(ep.name), _normalise(dist_name)} & wanted:
            continue
        origin[ep.name] = dist_name, version
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=ep.name)
        except (Exception, SystemExit) as e:  # an import may even call sys.exit()
            if pm.has_plugin(ep.name):
                pm.unregister(name=ep.name)
            what = "was rejected by pluggy" if isinstance(e, pluggy.PluginValidationError) else "failed to import"
            failures.append((ep.name, f"{what} ({ep.value}): {describe_error(e)}"))
    while True:  # hook implementations that match no hookspec, such as a misspelled name
        try:
            pm.check_pending()
            break
        except pluggy.PluginValidationError as e:
            name = pm.get_name(e.plugin)
            if name is None or is_builtin(name):
                raise
            unknown = sorted(h.name for h in pm.get_hookcallers(e.plugin) or [] if not h.has_spec())
            pm.unregister(name=name)
            failures.append((name, f"implements {', '.join(unknown)}, which is no streambp hook (misspelled?)"))
    for name, error in failures:
        dist_name, version = origin.get(name, ("", None))
        pm.failed.append({"name": name, "distribution": dist_name, "version": version, "error": error})
        fix = f"pip uninstall {dist_name}" if dist_name else "uninstall it"
        print(f"streambp: warning: the plugin {name!r} ({dist_name or 'an unnamed distribution'}) was not "
              f"loaded: it {error}. Fix the plugin, or {fix}, or set {LOAD_PLUGINS_ENV} to the plugins to load "
              "(an empty value loads none).", file=sys.stderr)


@functools.cache
def get_plugin_manager():
    """The process-wide plugin manager, with built-ins and installed plugins loaded."""
    pm = PluginManager()
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    load_entrypoint_plugins(pm)
    return pm


def reset_plugin_manager():
    """Forget the plugin manager; the next get_plugin_manager() builds a new one (reading
    STREAMBP_LOAD_PLUGINS and the installed entry points again). Plugins registered by hand are dropped."""
    get_plugin_manager.cache_clear()


def is_builtin(plugin_name):
    return plugin_name in DEFAULT_PLUGINS


@contextlib.contextmanager
def blame(owner, what):
    """Re-raise an exception other than StreambpError as a StreambpError naming the plugin `owner` (a name,
    or a list of suspects): "The plugin 'x' failed <what>: ...". Built-in plugins and None are left out;
    with nobody left the exception passes unchanged (a streambp bug keeps its traceback)."""
    try:
        yield
    except StreambpError:
        raise
    except Exception as e:
        names = [n for n in ([owner] if isinstance(owner, str) else owner or []) if not is_builtin(n)]
        if not names:
            raise
        raise StreambpError(f"The plugin {' or '.join(map(repr, names))} failed {what}: "
                            f"{describe_error(e)}") from e


def _culprit(exc, impls):
    """The name of the plugin whose hook implementation raised exc (innermost in its traceback), or None."""
    codes = {impl.function.__code__: impl.plugin_name for impl in impls if hasattr(impl.function, "__code__")}
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
        with blame(culprit or [i.plugin_name for i in impls], f"in its {name} hook"):
            raise
