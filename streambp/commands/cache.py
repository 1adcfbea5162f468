"""`streambp cache ls|clear`: the entries of the decoded-rows cache that `fit --cache` keeps."""
import json
from typing import Annotated, Optional

import typer

NAME = "cache"
app = typer.Typer(help="List or delete the decoded rows that `streambp fit --cache` keeps for later epochs.",
                  no_args_is_help=True)
Directory = Annotated[Optional[str], typer.Option(
    "--dir", metavar="DIR", help="The cache directory (default: where --cache auto keeps entries: "
                                 "$STREAMBP_CACHE_DIR, else ~/.cache/streambp).")]


def listed(root):
    """(entry path, manifest or None, state) of each entry under root; state: ok, stale (why) or unreadable."""
    from ..cache import entries, file_stats

    rows = []
    for path, m in entries(root):
        if m is None:
            rows.append((path, None, "unreadable"))
            continue
        try:
            files = [s[0] for s in m.get("files", [])]
            state = "ok" if file_stats(files) == m.get("files") else "stale (the data changed)"
        except OSError:
            state = "stale (data files missing)"
        rows.append((path, m, state))
    return rows


@app.command("ls")
def ls(directory: Directory = None,
       as_json: Annotated[bool, typer.Option("--json", help="Print the entries as JSON.")] = False):
    """List the entries: id, rows, size, last use, whether still valid, data."""
    import os
    import time

    from ..cache import default_root, disk_bytes

    root = directory or default_root()
    found = [{"id": os.path.basename(p), "path": p, "state": state, "bytes": disk_bytes(p),
              "rows": m and m.get("rows"), "data": m and [s[0] for s in m.get("files", [])],
              "last_used": os.path.getmtime(os.path.join(p, "manifest.json"))} for p, m, state in listed(root)]
    if as_json:
        print(json.dumps(found, indent=2))
        return
    if not found:
        print(f"No cache entries in {root}.")
        return
    for e in found:
        data = e["data"] or ["?"]
        more = f" (+{len(data) - 1} files)" if len(data) > 1 else ""
        rows = f"{e['rows']:,} rows" if isinstance(e["rows"], int) else "? rows"
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(e["last_used"]))
        print(f"{e['id']}  {rows:>14}  {e['bytes'] / 1e6:>10,.1f} MB  used {used}  {e['state']}  {data[0]}{more}")
    print(f"{len(found)} entries, {sum(e['bytes'] for e in found) / 1e6:,.1f} MB in {root}.")


@app.command("clear")
def clear(ids: Annotated[Optional[list[str]], typer.Argument(
              metavar="[ID]...", help="Entries to delete (default: all).", show_default=False)] = None,
          directory: Directory = None,
          stale: Annotated[bool, typer.Option("--stale", help="Delete only entries whose data changed or is "
                                                             "gone.")] = False):
    """Delete entries (all, the IDs given, or --stale ones) and what killed runs left half-written."""
    import os

    from ..atomic import remove_stale_temporaries, scope
    from ..cache import default_root, disk_bytes, remove
    from ..errors import StreambpError

    root = directory or default_root()
    found = listed(root)
    known = {os.path.basename(p) for p, _, _ in found}
    unknown = [i for i in ids or [] if i not in known]
    if unknown:
        raise StreambpError(f"{root} has no cache entry {unknown[0]!r}; `streambp cache ls --dir {root}` lists them.")
    freed = removed = 0
    with scope():
        for path, _, state in found:
            if (ids and os.path.basename(path) not in ids) or (stale and state == "ok"):
                continue
            size = disk_bytes(path)
            remove(path)
            freed, removed = freed + size, removed + 1
    remove_stale_temporaries(root)
    print(f"Deleted {removed} entries ({freed / 1e6:,.1f} MB) from {root}.")
