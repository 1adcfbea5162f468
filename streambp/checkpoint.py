"""Checkpoints of a fit: parameters, optimizer state, stream position, history and settings.

RUN_DIR/checkpoint-eEEEE-sSSSSSSSSS.npz (epoch, global step, at least 4 and 9 digits, wider when they grow;
ordered by the numbers, never by the text). The archive (streambp/archive.py): `theta` and the model's
scaler arrays (validated like a model file), every array of the optimizer's state_dict() as
`optimizer.<name>`, `best_theta` while early stopping tracks one, and `state`: UTF-8 JSON with the model's
metadata, the optimizer's other state, the epoch and the minibatches done in it (0 at its end), the global
step, the history, the label summary and the fit's settings. The learning-rate schedule and the shuffle are
pure functions of the step and of (seed, epoch), so the position restores them. Written atomically; the
newest `keep` are kept. A fit holds RUN_DIR/.lock while it runs, so two fits never share a run directory.
"""
import os
import re
import sys

import numpy as np

from .archive import Archive, BadArchive, write_archive
from .atomic import current, locked, make_dir
from .errors import StreambpError
from .model import Invalid, read_model

NAME = re.compile(r"checkpoint-e(\d+)-s(\d+)\.npz")


def checkpoints(run_dir):
    """The checkpoint files of run_dir, oldest first, ordered by (epoch, step)."""
    try:
        names = os.listdir(run_dir)
    except OSError:
        return []
    found = [(int(m.group(1)), int(m.group(2)), name) for name in names if (m := NAME.fullmatch(name))]
    return [os.path.join(run_dir, name) for *_, name in sorted(found)]


def latest(run_dir):
    """The newest checkpoint file in run_dir, or None."""
    found = checkpoints(run_dir)
    return found[-1] if found else None


def lock(run_dir):
    """Lock run_dir for the current command (until it ends); refused while another process holds it."""
    current().hold(locked(run_dir, "--run-dir"))


def save_checkpoint(run_dir, model, optimizer, state, best_theta=None, keep=3):
    """Write the checkpoint of state["epoch"] and state["steps"]; drop all but the newest `keep`."""
    make_dir(run_dir, "--run-dir")
    opt = optimizer.state_dict()
    arrays = {**model.arrays(), **{f"optimizer.{k}": v for k, v in opt.items() if isinstance(v, np.ndarray)}}
    meta = {**state, "model": model.metadata(),
            "optimizer": {k: v for k, v in opt.items() if not isinstance(v, np.ndarray)}}
    if best_theta is not None:
        arrays["best_theta"] = best_theta
    path = os.path.join(run_dir, f"checkpoint-e{state['epoch']:04d}-s{state['steps']:09d}.npz")
    write_archive(path, "state", meta, arrays, "the checkpoint", "Choose another --run-dir.")
    for old in checkpoints(run_dir)[:-keep]:
        os.remove(old)
    return path


def read(path):
    """(model, optimizer state dict, state) of one checkpoint file, validated; raises BadArchive or Invalid."""
    with Archive(path) as a:
        state = a.json("state")
        if not isinstance(state, dict) or not isinstance(state.get("model"), dict) \
                or not isinstance(state.get("optimizer"), dict):
            raise Invalid("its state lacks the model's metadata or the optimizer's state")
        for key, kind in (("history", list), ("labels", dict), ("config", dict)):
            if not isinstance(state.get(key), kind):
                raise Invalid(f"its state's {key} is {type(state.get(key)).__name__}, not a {kind.__name__}")
        for key in ("epoch", "done", "steps"):
            if not (isinstance(state.get(key), int) and not isinstance(state[key], bool) and state[key] >= 0):
                raise Invalid(f"its state has {key} {state.get(key)!r}, not an integer >= 0")
        model = read_model(a, state.pop("model"))
        P = model.theta.size
        extra = {}
        for name, (shape, dtype) in a.headers.items():
            if name.startswith("optimizer.") or name == "best_theta":
                if int(np.prod(shape, dtype=object)) > P or dtype.kind not in "fiu":
                    raise Invalid(f"{name!r} is {dtype} {shape}; at most {P} numbers expected")
                extra[name] = a.array(name)
    if "best_theta" in extra and extra["best_theta"].shape != model.theta.shape:
        raise Invalid(f"'best_theta' has shape {extra['best_theta'].shape}, theta {model.theta.shape}")
    optimizer = {**state.pop("optimizer"),
                 **{k.split(".", 1)[1]: v for k, v in extra.items() if k.startswith("optimizer.")}}
    state["best_theta"] = extra.get("best_theta")
    state["checkpoint"] = path
    return model, optimizer, state


def newest_valid(run_dir, skipped=None):
    """(path, (model, optimizer state, state)) of the newest checkpoint in run_dir that reads and validates,
    or None; each newer one is appended to `skipped` as (path, what is wrong with it)."""
    for path in reversed(checkpoints(run_dir)):
        try:
            return path, read(path)
        except (BadArchive, Invalid, OSError) as e:
            if skipped is not None:
                skipped.append((path, str(e) or type(e).__name__))
    return None


def stderr(text):
    print(text, file=sys.stderr, flush=True)


def load_latest(run_dir, say=stderr):
    """(model, optimizer state dict, state) of the newest usable checkpoint in run_dir, which becomes an
    input of the command; state["checkpoint"] is its path. Unusable newer ones are skipped and reported
    through say(text) (default: stderr; None: silent)."""
    run_dir = os.fspath(run_dir)
    found = checkpoints(run_dir)
    if not found:
        why = "" if os.path.isdir(run_dir) else " (it is not a directory)"
        raise StreambpError(f"No checkpoint to resume from in {run_dir}{why}: it holds no files "
                            "checkpoint-e<epoch>-s<step>.npz. Give the --run-dir of the run to continue.")
    skipped = []
    valid = newest_valid(run_dir, skipped)
    if valid is None:
        raise StreambpError(f"No usable checkpoint in {run_dir}: " + "; ".join(
            f"{os.path.basename(p)}: {why}" for p, why in skipped) + ". Start a new run without --resume.")
    for path, why in skipped:
        if say:
            say(f"Checkpoint {path} is unusable ({why}); resuming from an earlier one.")
    current().protect(valid[0], "the --resume checkpoint")  # the unusable newer ones may be written over
    return valid[1]
