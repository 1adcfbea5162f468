"""Every hookspec is documented (docstring template, a `### name` entry in docs/plugins.md) and exercised
by a test named test_hook_<name> that registers a throwaway plugin implementing it (as datasette does)."""
import ast
import inspect
import re
from pathlib import Path

import pytest

from streambp import hookspecs

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "plugins.md"
TESTS = Path(__file__).resolve().parent


def hook_names():
    return sorted(name for name, fn in vars(hookspecs).items() if hasattr(fn, "streambp_spec"))


def test_there_are_hooks():
    names = hook_names()
    assert {"register_optimizers", "register_loggers", "register_sources", "register_commands",
            "fit_start", "step_end", "epoch_end", "fit_end"} <= set(names)


def test_hooks_are_broadcast():
    for name in hook_names():
        opts = getattr(hookspecs, name).streambp_spec
        assert not opts.get("firstresult"), f"{name} is firstresult; the docs say none is"


@pytest.mark.parametrize("name", hook_names())
def test_docstring_follows_template(name):
    doc = inspect.getdoc(getattr(hookspecs, name))
    assert doc, f"hookspec {name} has no docstring"
    for part in ("Parameters:", "Returns:", "firstresult"):
        assert part in doc, f"hookspec {name}'s docstring lacks {part!r}"
    for arg in inspect.signature(getattr(hookspecs, name)).parameters:
        assert re.search(rf"^\s+{arg}:", doc, re.M), f"hookspec {name}'s docstring does not describe {arg!r}"


@pytest.mark.parametrize("name", hook_names())
def test_documented(name):
    text = DOCS.read_text()
    assert re.search(rf"^###\s+`?{re.escape(name)}\b", text, re.M), \
        f"docs/plugins.md has no '### {name}' reference entry"
    section = re.split(rf"^###\s+`?{re.escape(name)}\b.*$", text, flags=re.M)[1]
    section = re.split(r"^##", section, flags=re.M)[0]
    assert "```python" in section and "@hookimpl" in section, f"the docs entry for {name} has no example"
    assert "Caveats" in section, f"the docs entry for {name} has no caveats"
    signature = f"{name}({', '.join(inspect.signature(getattr(hookspecs, name)).parameters)})"
    assert signature in section, f"the docs entry for {name} does not give the signature {signature}"


def all_test_functions():
    """The names of every test function in tests/."""
    names = set()
    for path in TESTS.glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"):
                names.add(node.name)
    return names


@pytest.mark.parametrize("name", hook_names())
def test_exercised(name):
    assert f"test_hook_{name}" in all_test_functions(), \
        f"no test named test_hook_{name} registers a plugin implementing {name} and checks it is called"


def test_docs_mention_discovery_and_builtins():
    text = DOCS.read_text()
    for needle in ("STREAMBP_LOAD_PLUGINS", "[project.entry-points.streambp]", "streambp plugins",
                   "### Optimizer", "### Logger", "### Source", "`jsonl`", "`csv`", "`arrow`", "`parquet`"):
        assert needle in text, needle
