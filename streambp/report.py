"""`streambp report`: an HTML page with plots of a run directory's events.jsonl (written by `streambp fit`)."""
import html
import json
import os
from dataclasses import dataclass, field

import numpy as np

from .atomic import atomic_path, make_dir, scope
from .errors import StreambpError


@dataclass
class Run:
    """The parsed events of a run: each fit_start (several after resumes), the steps and the latest
    epoch_end of each epoch, both in order (a redone stretch replaces what it redid), and the config text."""

    path: str
    starts: list = field(default_factory=list)
    steps: list = field(default_factory=list)
    epochs: list = field(default_factory=list)
    ends: list = field(default_factory=list)
    seconds: float = 0.0  # wall time from each fit_start to the last event after it, summed over resumes
    config: str = ""


def supersede(records, record, key):
    """Append `record` after dropping those it redoes: every record whose `key` is not below its own."""
    while records and records[-1].get(key, 0) >= record.get(key, 0):
        records.pop()
    records.append(record)


def read_events(path):
    """The JSON objects of an events.jsonl file; an unfinished last line (a run still writing) is ignored, and
    so is a line cut short by a killed run that was then resumed."""
    with open(path, encoding="utf-8", errors="replace") as f:  # a bad byte spoils its line, not the file
        lines = f.readlines()
    events = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or (number == len(lines) and not line.endswith("\n")):
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as e:
            if number < len(lines) and lines[number].startswith('{"event": "fit_start"'):
                continue  # cut short when the run was killed; the next line starts the resumed run
            raise StreambpError(f"{path} line {number} is not JSON ({e.msg}); is it an events file written by "
                                "`streambp fit`?") from None
        if not isinstance(event, dict) or "event" not in event:
            raise StreambpError(f"{path} line {number} is not a streambp event (a JSON object with \"event\").")
        events.append(event)
    return events


def read_run(run_dir):
    """Parse RUN_DIR/events.jsonl (and config.toml) into a Run."""
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise StreambpError(f"Run directory {run_dir} does not exist (or is not a directory).")
    path = os.path.join(run_dir, "events.jsonl")
    if not os.path.isfile(path):
        raise StreambpError(f"{run_dir} has no events file: expected {path}, which `streambp fit` writes into "
                            "its run directory (--run-dir). Is this a run directory?")
    run, last_step, spans = Run(run_dir), 0, []
    for e in read_events(path):
        kind, t = e["event"], e.get("time")
        if kind == "fit_start":
            run.starts.append(e)
            spans.append([t, t])
        elif kind == "step":
            e["stretch"] = [len(run.starts), e.get("epoch")]  # the averages restart with each epoch and resume
            supersede(run.steps, e, "step")
            last_step = e.get("step", last_step)
        elif kind == "epoch_end":
            e.setdefault("step", last_step)  # older logs: the last logged step
            supersede(run.epochs, e, "epoch")
        elif kind == "fit_end":
            run.ends.append(e)
        if spans and None not in (t, spans[0][0]):
            spans[-1][1] = t
            e["elapsed"] = t - spans[0][0]  # seconds since the first fit_start
    run.seconds = sum(b - a for a, b in spans if a is not None)
    if not run.starts:
        raise StreambpError(f"{path} has no fit_start event yet: nothing to report.")
    config = os.path.join(run_dir, "config.toml")
    if os.path.isfile(config):
        with open(config, encoding="utf-8") as f:
            run.config = f.read()
    else:
        run.config = json.dumps(run.starts[-1].get("config", {}), indent=2)
    return run


def curve(records, x, y, by=None):
    """The x and y lists of `records`; with `by`, a None (a break in the line) where the record's `by` changes."""
    out = {"x": [], "y": []}
    for i, r in enumerate(records):
        if by and i and r[by] != records[i - 1][by]:
            out["x"].append(None)
            out["y"].append(None)
        out["x"].append(r.get(x))
        out["y"].append(r.get(y))
    return out


def series(run):
    """The exact data plotted: x and y lists per curve, the epoch-end times and the last confusion matrix.
    The logged-step curves are averages over the epoch so far, so their lines break at each epoch."""
    confusion = next(({"epoch": e["epoch"], "matrix": e["val_confusion"]} for e in reversed(run.epochs)
                      if e.get("val_confusion")), None)
    return {
        "loss": {"train (logged steps)": curve(run.steps, "step", "loss", "stretch"),
                 "train (epoch)": curve(run.epochs, "step", "train_loss"),
                 "validation (epoch)": curve(run.epochs, "step", "val_loss")},
        "accuracy": {"train (logged steps)": curve(run.steps, "step", "accuracy", "stretch"),
                     "train (epoch)": curve(run.epochs, "step", "train_accuracy"),
                     "validation (epoch)": curve(run.epochs, "step", "val_accuracy")},
        "throughput": {"rows/s so far (logged steps)": curve(run.steps, "elapsed", "rows_per_s", "stretch"),
                       "rows/s (epoch)": curve(run.epochs, "elapsed", "rows_per_s")},
        "epoch_ends": [e["elapsed"] for e in run.epochs if e.get("elapsed") is not None],
        "confusion": confusion and {**confusion, "classes": [str(c) for c in run.starts[-1].get("classes", [])]},
    }


def figure(size=(8, 4.5)):
    try:
        from matplotlib.figure import Figure  # no pyplot: no global backend state, renders with Agg
    except ImportError:
        raise StreambpError("streambp report needs matplotlib, which is not installed. Install it into this "
                            "environment: python -m pip install matplotlib") from None
    return Figure(figsize=size, dpi=100, layout="constrained")


def save(fig, path):
    with atomic_path(path, "a report image", "Choose another --out.") as tmp:
        fig.savefig(tmp, format="png")


def plot_lines(curves, xlabel, ylabel, path, marks=(), yformat=None):
    """One line per curve: those named "... (epoch)" with markers, the others (logged steps) thin; `marks`
    are x values of epoch ends."""
    fig = figure()
    ax = fig.add_subplot()
    for name, c in curves.items():
        x, y = np.array(c["x"], dtype=float), np.array(c["y"], dtype=float)  # None: nan, a break
        if np.isfinite(y).any():
            per_epoch = name.endswith("(epoch)")
            style = {"marker": "o", "linewidth": 1.5} if per_epoch else {"marker": ".", "markersize": 3,
                                                                        "linewidth": 0.8, "alpha": 0.7}
            ax.plot(x, y, label=name, **style)
    if not ax.lines:
        ax.text(0.5, 0.5, "nothing logged yet", ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.set(xticks=[], yticks=[])
    elif yformat:
        ax.yaxis.set_major_formatter(yformat)
    for i, t in enumerate(marks):
        ax.axvline(t, color="grey", linestyle=":", linewidth=1, label="epoch end" if i == 0 else None)
    if ax.lines:
        fig.legend(loc="outside upper center", ncols=3, frameon=False)  # above the axes, never on the data
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    save(fig, path)


def plot_confusion(confusion, path):
    """The matrix as an image (rows true, columns predicted), counts written in when K <= 20."""
    m, classes = confusion["matrix"], confusion["classes"]
    K = len(m)
    side = min(max(6.0, 0.5 * K + 2), 12)  # room for the counts: half an inch a class, up to 20 classes
    fig = figure((side + 1, side))
    ax = fig.add_subplot()
    image = ax.imshow(m, cmap="Blues")
    fig.colorbar(image, ax=ax, label="rows")
    ticks = list(range(K)) if K <= 30 else []
    labels = classes if len(classes) == K else [str(i) for i in range(K)]
    ax.set_xticks(ticks, [labels[i] for i in ticks], rotation=90 if K > 10 else 0)
    ax.set_yticks(ticks, [labels[i] for i in ticks])
    if K <= 20:
        high = max(max(row) for row in m) / 2
        for i, row in enumerate(m):
            for j, n in enumerate(row):
                ax.text(j, i, str(n), ha="center", va="center", fontsize=8 if K > 10 else 10,
                        color="white" if n > high else "black")
    ax.set(xlabel="predicted class", ylabel="true class", title=f"validation, epoch {confusion['epoch']}")
    save(fig, path)


def number(value, spec):
    return "–" if value is None else format(value, spec)


def table(header, rows):
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


EPOCH_COLUMNS = [("epoch", "epoch", "d"), ("train loss", "train_loss", ".4f"),
                 ("train accuracy", "train_accuracy", ".4f"), ("val loss", "val_loss", ".4f"),
                 ("val accuracy", "val_accuracy", ".4f"), ("seconds", "seconds", ".1f"),
                 ("rows/s", "rows_per_s", ",.0f")]
STYLE = """body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em; }
table { border-collapse: collapse; margin: 1em 0; } td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; }
td { text-align: right; } td:first-child { text-align: left; } th { background: #f3f3f3; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; max-width: 100%; } img { max-width: 100%; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; }"""


def kept(end):
    """Which epoch's weights the model file holds, from the fit_end event."""
    if end.get("best_epoch"):
        return f"epoch {end['best_epoch']} (lowest validation loss, --early-stopping)"
    if end.get("converged_epoch"):
        return f"epoch {end['converged_epoch']}, the last (the training loss had settled)"
    return "the last epoch's"


def page(run, data):
    """index.html: the summary, the images, the per-epoch table and the configuration, all escaped."""
    start, last = run.starts[-1], (run.epochs[-1] if run.epochs else {})
    val = [e["val_accuracy"] for e in run.epochs if e.get("val_accuracy") is not None]
    last_loss = last.get("train_loss", run.steps[-1].get("loss") if run.steps else None)
    finished = bool(run.ends) and run.ends[-1].get("time", 0) >= start.get("time", 0)
    summary = table([], [
        ("status", "finished" if finished else "not finished (still running, interrupted or stopped)"),
        ("architecture", "-".join(map(str, start.get("sizes", [])))), ("training rows", number(start.get("rows"), ",")),
        ("epochs done", f"{len(run.epochs)} of {start.get('epochs', '?')}"),
        ("best validation accuracy", number(max(val, default=None), ".4f")),
        ("last validation accuracy", number(val[-1] if val else None, ".4f")),
        ("final train loss", number(last_loss, ".4f")), ("training time (wall, s)", number(run.seconds, ".1f")),
        ("threads", ", ".join(dict.fromkeys(str(s.get("threads")) for s in run.starts))),
        ("weights kept", kept(run.ends[-1]) if finished else "-"),
        ("classes", ", ".join(map(str, start.get("classes", [])))), ("resumes", len(run.starts) - 1)])
    epochs = table([c[0] for c in EPOCH_COLUMNS], [[number(e.get(key), spec) for _, key, spec in EPOCH_COLUMNS]
                                                    for e in run.epochs])
    images = [("loss.png", "Loss"), ("accuracy.png", "Accuracy"), ("throughput.png", "Throughput")]
    if data["confusion"]:
        images.append(("confusion.png", "Validation confusion matrix"))
    figures = "".join(f'<figure><img src="{f}" alt="{t}"><figcaption>{t}</figcaption></figure>' for f, t in images)
    if not run.epochs:
        epochs = "<p>No epoch has finished yet.</p>"
    if not data["confusion"]:
        why = ("no epoch has finished yet" if not run.epochs else "the epoch events have no val_confusion" if val
               else "the run has no validation data (--val or --val-fraction)")
        figures += f"<p>No confusion matrix: {why}.</p>"
    title = html.escape(f"streambp run {os.path.abspath(run.path)}")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>
{STYLE}
</style></head><body>
<h1>{title}</h1>
<h2>Summary</h2>{summary}
<h2>Curves</h2>{figures}
<h2>Epochs</h2>{epochs}
<h2>Configuration</h2><pre>{html.escape(run.config)}</pre>
</body></html>
"""


def write_report(run_dir, out_dir=None):
    """Write index.html, the PNGs and series.json (the data plotted) to out_dir (default RUN_DIR/report);
    return the path of index.html."""
    with scope() as guard:
        guard.protect([os.path.join(run_dir, "events.jsonl"), os.path.join(run_dir, "config.toml")],
                      "a file of the run directory")
        return write_pages(run_dir, out_dir)


def write_pages(run_dir, out_dir):
    run = read_run(run_dir)
    figure()  # matplotlib is there, before anything is written
    out_dir = os.fspath(out_dir or os.path.join(run_dir, "report"))
    make_dir(out_dir, "--out")
    data = series(run)
    plot_lines(data["loss"], "global step", "loss (cross-entropy)", os.path.join(out_dir, "loss.png"))
    plot_lines(data["accuracy"], "global step", "accuracy", os.path.join(out_dir, "accuracy.png"))
    plot_lines(data["throughput"], "seconds since the first fit_start", "rows/s (average over the epoch)",
               os.path.join(out_dir, "throughput.png"), data["epoch_ends"], "{x:,.0f}")
    if data["confusion"]:
        plot_confusion(data["confusion"], os.path.join(out_dir, "confusion.png"))
    elif os.path.exists(os.path.join(out_dir, "confusion.png")):
        os.remove(os.path.join(out_dir, "confusion.png"))  # from an earlier report of this directory
    for name, text in (("series.json", json.dumps(data, indent=1)), ("index.html", page(run, data))):
        with atomic_path(os.path.join(out_dir, name), f"the report's {name}", "Choose another --out.") as tmp, \
                open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return os.path.join(out_dir, "index.html")
