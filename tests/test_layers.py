"""One-way layers: the imports of every streambp module (every import statement, also those inside
functions), read with ast, have no cycle; nothing below train reaches the plugin manager or the registries;
the kernels import nothing of streambp outside streambp.kernels, and of other packages only NumPy, Numba
(and llvmlite, which Numba's intrinsics are written with)."""
import ast
import sys
from pathlib import Path

import pytest

import streambp

PACKAGE = Path(streambp.__file__).resolve().parent
# Modules below train in the flow cli -> config -> plugins/registry -> source -> features/stream -> train
# -> engine/step -> kernels, with what they are built from.
BELOW_TRAIN = ("streambp.stream", "streambp.features", "streambp.engine", "streambp.step", "streambp.model",
               "streambp.kernels", "streambp.evaluate", "streambp.badrows", "streambp.checkpoint",
               "streambp.atomic", "streambp.threads", "streambp.optim", "streambp.schedules",
               "streambp.gradcheck", "streambp.errors")
PLUGIN_LAYER = ("streambp.plugins", "streambp.registry", "streambp.events", "streambp.default_plugins")
KERNEL_PACKAGES = {"numpy", "numba", "llvmlite"}


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_package(name):
    return MODULES[name].name == "__init__.py"


def imported(name):
    """The modules `name` imports (absolute names), each with the line of its import statement."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    package = name if is_package(name) else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            found.append((source, node.lineno))
            for alias in node.names:  # `from . import threads` imports the module streambp.threads
                if f"{source}.{alias.name}" in MODULES:
                    found.append((f"{source}.{alias.name}", node.lineno))
    return found


def streambp_imports(name):
    """The streambp modules `name` imports (a package stands for its __init__)."""
    out = set()
    for target, _ in imported(name):
        while target and target not in MODULES:  # `import streambp.kernels.optim.x` -> the module it names
            target = target.rpartition(".")[0]
        if target and target != name:
            out.add(target)
    return out


GRAPH = {name: streambp_imports(name) for name in MODULES}


def cycles():
    """Each strongly connected component of more than one module (Tarjan), as a sorted list."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return found


def reachable(name):
    seen, todo = set(), [name]
    while todo:
        for w in GRAPH[todo.pop()] - seen:
            seen.add(w)
            todo.append(w)
    return seen


def in_layer(name, prefixes):
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_walk_sees_the_imports():
    """The graph itself: known edges of either kind of import are found (a broken walk finds no cycles)."""
    assert "streambp.registry" in GRAPH["streambp.train"]  # from .registry import ...
    assert "streambp.threads" in GRAPH["streambp.train"]  # from . import threads
    assert "streambp.model" in GRAPH["streambp"]  # inside a function
    assert "streambp.kernels.compile" in GRAPH["streambp.kernels.optim"]


def test_no_import_cycle():
    assert cycles() == [], "import cycles (each a set of modules importing one another)"


@pytest.mark.parametrize("name", [m for m in MODULES if in_layer(m, BELOW_TRAIN)])
def test_below_train_never_reaches_the_plugins(name):
    bad = sorted(m for m in reachable(name) if in_layer(m, PLUGIN_LAYER))
    assert bad == [], f"{name} imports (perhaps through others) {bad}, above it"


@pytest.mark.parametrize("name", [m for m in MODULES if in_layer(m, ("streambp.kernels",))])
def test_kernels_import_only_kernels_numpy_and_numba(name):
    outside = []
    for target, line in imported(name):
        top = target.partition(".")[0]
        if top == "streambp" and not in_layer(target, ("streambp.kernels",)):
            outside.append((target, line))
        elif top != "streambp" and top not in KERNEL_PACKAGES and top not in sys.stdlib_module_names:
            outside.append((target, line))
    assert outside == [], f"{name} imports {outside} (module, line)"
