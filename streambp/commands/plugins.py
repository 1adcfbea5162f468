import json
from typing import Annotated

import typer

from ..plugins import DEFAULT_PLUGINS, describe_plugins

NAME = "plugins"


def command(
    all: Annotated[bool, typer.Option("--all", help="Include the built-in plugins.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
):
    """List the loaded plugins, the hooks each implements and the names each registers."""
    found = [p for p in describe_plugins() if all or p["name"] not in DEFAULT_PLUGINS]
    if as_json:
        print(json.dumps(found, indent=2))
        return
    if not found:
        print("No plugins installed (--all shows the built-in ones).")
    for p in found:
        print(f"{p['name']}: hooks {', '.join(p['hooks'])}")
        for kind, names in p["registers"].items():
            print(f"    {kind}: {', '.join(names)}")
