"""The four registries (optimizers, loggers, sources, engines) filled by the plugins' registration hooks,
opening a data source by name or file extension, the one walk that finds a dataset's files, and the
listing of `streambp plugins`.

Each registration hook runs once per plugin manager: its registrations are cached on the manager, and
registering or unregistering a plugin clears the cache.
"""
import functools
import glob
import inspect
import itertools
import os

from .errors import StreambpError
from .plugins import DEFAULT_PLUGINS, blame, get_plugin_manager, is_builtin


class Registry:
    """Names registered through one registration hook, each mapped to its factory (and extras)."""

    def __init__(self, kind, hook_name):
        self.kind = kind
        self.hook_name = hook_name

    def owned_entries(self):
        """{name: (plugin name, (factory, *extras))}, from each plugin's registration hook (cached)."""
        pm = get_plugin_manager()
        if self.hook_name not in pm.registrations:
            pm.registrations[self.hook_name] = self._collect(pm)
        return pm.registrations[self.hook_name]

    def _collect(self, pm):
        found = {}
        caller = getattr(pm.hook, self.hook_name)
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
            with blame(owner, f"in its {self.hook_name} hook"):
                impl.function(*[kwargs[a] for a in impl.argnames])
        return found

    def entries(self):
        """{name: (factory, *extras)}; a third-party factory is wrapped to name its plugin on errors."""
        return {name: (_blamed_factory(f"building the {self.kind} {name!r}", owner, entry[0]), *entry[1:])
                for name, (owner, entry) in self.owned_entries().items()}

    def get(self, name):
        entries = self.entries()
        if name not in entries:
            failed = "".join(f" The plugin {f['name']!r} ({f['distribution']}) was not loaded: it {f['error']}."
                             for f in get_plugin_manager().failed)
            raise StreambpError(f"Unknown {self.kind} {name!r}. Available: {', '.join(sorted(entries))}.{failed}")
        return entries[name]

    def owner(self, name):
        """The name of the plugin that registers `name`, or None."""
        entry = self.owned_entries().get(name)
        return entry[0] if entry else None


def _blamed_factory(what, owner, factory):
    """factory itself for a built-in plugin; otherwise a wrapper that blames its plugin for its errors."""
    if is_builtin(owner):
        return factory

    @functools.wraps(factory)
    def build(*args, **kwargs):
        with blame(owner, what):
            return factory(*args, **kwargs)

    return build


optimizers = Registry("optimizer", "register_optimizers")
loggers = Registry("logger", "register_loggers")
sources = Registry("source", "register_sources")
engines = Registry("engine", "register_engines")


def logger_owner(log):
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


# --- the files of a dataset ------------------------------------------------------------------------

def has_extension(name, extensions):
    return name.lower().endswith(tuple(e.lower() for e in extensions))


def dataset_files(directory, extensions=None):
    """Files under directory in sorted order (ending in one of extensions, when given), skipping names
    that start with "." or "_" (such as _SUCCESS, _common_metadata, .crc files and _temporary directories)."""
    for root, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for name in sorted(names):
            if not name.startswith((".", "_")) and (extensions is None or has_extension(name, extensions)):
                yield os.path.join(root, name)


def is_glob(path):
    text = os.fspath(path)
    return not os.path.exists(text) and any(ch in text for ch in "*?[")


def expand_paths(path, extensions):
    """The files named by a file path, a directory (searched recursively) or a glob, in sorted order."""
    path = os.fspath(path)
    if is_glob(path):
        files = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
        if not files:
            raise StreambpError(f"No files match {path}.")
        return files
    if os.path.isdir(path):
        files = sorted(dataset_files(path, extensions))
        if not files:
            raise StreambpError(f"Directory {path} holds no files ending in {', '.join(extensions)}.")
        return files
    if not os.path.exists(path):
        raise StreambpError(f"{path} does not exist.")
    return [path]


def open_source(path, name=None, **options):
    """Open `path` (a file, directory or glob) with the source called `name`, else the one registered
    for its file extension: the longest registered extension that matches wins; for a directory, the
    source matching the most of its first 10,000 files; for a glob, its pattern or else the files it
    matches. `options` go to the source's factory, factory(path, **options)."""
    entries = sources.entries()
    text = os.fspath(path)
    if name is None and not is_glob(text) and not os.path.exists(text):
        raise StreambpError(f"{path} does not exist.")

    def matching(file_name):
        best, best_len = None, 0
        for candidate, (_, *extra) in entries.items():
            for ext in (extra[0] if extra else ()):
                if file_name.lower().endswith(ext.lower()) and len(ext) > best_len:
                    best, best_len = candidate, len(ext)
        return best

    def most_common(files):
        counts = {}
        for f in files:
            found = matching(os.path.basename(f))
            if found is not None:
                counts[found] = counts.get(found, 0) + 1
        return max(counts, key=counts.get) if counts else None  # ties: the first one found

    if name is None:
        if os.path.isdir(text):
            name = most_common(itertools.islice(dataset_files(text), 10000))
            if name is None:
                known = sorted({e for _, *extra in entries.values() for e in (extra[0] if extra else ())})
                raise StreambpError(f"Directory {path} holds no files ending in {', '.join(known)}; name a "
                                    f"source with --source ({', '.join(sorted(entries))}).")
        elif is_glob(text):
            name = matching(text.rstrip("/"))
            if name is None:
                files = [p for p in glob.glob(text, recursive=True) if os.path.isfile(p)]
                if not files:
                    raise StreambpError(f"No files match {path}.")
                name = most_common(files)
        else:
            name = matching(os.path.basename(text.rstrip("/")))
        if name is None:
            raise StreambpError(f"No source reads {path}: name one with --source ({', '.join(sorted(entries))}).")
    factory = entries[name][0] if name in entries else sources.get(name)[0]
    if options:
        accepted = inspect.signature(factory).parameters
        unknown = [k for k in options if k not in accepted] if not any(
            p.kind is p.VAR_KEYWORD for p in accepted.values()) else []
        if unknown:
            takes = [k for k, p in accepted.items() if k != "path" and p.kind is p.POSITIONAL_OR_KEYWORD]
            raise StreambpError(f"The {name} source has no option {unknown[0]!r}; it takes: "
                                f"{', '.join(takes) or 'no options'}.")
    return factory(path, **options)


# --- `streambp plugins` ----------------------------------------------------------------------------

def describe_plugins():
    """[{name, version?, distribution?, hooks, registers: {kind: [names]}}] for every loaded plugin, then
    [{name, distribution, version, error, failed: True}] for each that failed to load."""
    from . import __version__

    pm = get_plugin_manager()
    dists = pm.distributions()
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
    return out + [{**f, "failed": True} for f in pm.failed]
