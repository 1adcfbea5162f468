import json
from typing import Annotated

import typer


NAME = "inspect"


def command(
    model: Annotated[str, typer.Argument(help="Model file written by `streambp fit`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print everything as JSON.")] = False,
):
    """Architecture, classes, features and training metadata of a model file."""
    from ..model import load

    m = load(model)
    meta = m.metadata()
    if as_json:
        print(json.dumps(meta, indent=2))
        return
    t = m.training
    print(f"architecture  {'-'.join(map(str, m.sizes))} (sigmoid hidden, softmax output), "
          f"{m.theta.size:,} parameters, {m.theta.dtype}")
    more = " ..." if len(m.classes) > 20 else ""
    print(f"classes       {len(m.classes)}: {', '.join(map(str, m.classes[:20]))}{more}")
    inputs = f"column {m.input_column!r} ({len(m.features)} values)" if m.input_column else \
        f"{', '.join(m.features[:10])}{' ...' if len(m.features) > 10 else ''}"
    print(f"features      {len(m.features)}: {inputs}")
    rows = m.spec.summary()
    if m.spec.categorical or m.spec.ignored or m.spec.indicators:
        width = max(len(name) for name, _, _ in rows)
        print("columns")
        for name, role, detail in rows:
            print(f"  {name.ljust(width)}  {role:<11}  {detail}".rstrip())
    if t:
        c = t.get("config", {})
        print(f"trained on    {c.get('data')} ({t.get('rows', 0):,} rows), {c.get('epochs')} epochs, batch "
              f"{c.get('batch_size')}, lr {c.get('lr')}, optimizer {c.get('optimizer')}, seed {c.get('seed')}")
        for h in t.get("history", [])[-3:]:
            extra = f", val accuracy {h['val_accuracy']:.4f}" if "val_accuracy" in h else ""
            print(f"epoch {h['epoch']:<7} train loss {h['train_loss']:.4f}{extra}")
        if t.get("best_epoch"):
            print(f"kept          the weights of epoch {t['best_epoch']} (lowest validation loss, --early-stopping)")
        if t.get("converged_epoch"):
            print(f"stopped       after epoch {t['converged_epoch']}: the training loss had settled")
        print(f"streambp      {t.get('streambp_version')}, format version {meta['format_version']}")
