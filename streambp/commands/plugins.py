import json
from typing import Annotated

import typer

NAME = "plugins"


def command(
    all: Annotated[bool, typer.Option("--all", help="Include the built-in plugins.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
):
    """List the loaded plugins, the hooks each implements and the names each registers, and the plugins
    that failed to load, with the reason.

    Installed plugins load from the "streambp" entry-point group; STREAMBP_LOAD_PLUGINS (comma-separated
    distribution or entry-point names, empty for none) limits which.
    """
    from ..plugins import LOAD_PLUGINS_ENV, is_builtin
    from ..registry import describe_plugins

    found = [p for p in describe_plugins() if all or not is_builtin(p["name"])]
    if as_json:
        print(json.dumps(found, indent=2))
        return
    if not found:
        print(f"No plugins installed (or none allowed by {LOAD_PLUGINS_ENV}); --all shows the built-in ones.")
    for p in found:
        version = f" {p['version']}" if p.get("version") else ""
        dist = p.get("distribution")
        origin = f" ({dist}{version})" if dist and dist != p["name"] else version
        if p.get("failed"):
            print(f"{p['name']}{origin}: FAILED, not loaded: it {p['error']}")
            continue
        print(f"{p['name']}{origin}: hooks {', '.join(p['hooks']) or 'none'}")
        for kind, names in p["registers"].items():
            print(f"    {kind}: {', '.join(names)}")
