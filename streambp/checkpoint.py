"""Checkpoints of a fit at epoch ends: parameters, optimizer state, position, history and settings.

RUN_DIR/checkpoint-EEEEE.npz (read with allow_pickle=False): `theta`, the model's scaler arrays, every
array of the optimizer's state_dict() as `optimizer.<name>`, `best_theta` while early stopping tracks
one, and `state`: UTF-8 JSON with the model's metadata, the optimizer's other state, the epoch finished,
the global step, the history, the label summary and the fit's settings. Written atomically; the newest
KEEP are kept.
"""
import glob
import json
import os

import numpy as np

from .atomic import atomic_path
from .errors import StreambpError
from .model import Model

KEEP = 3
PATTERN = "checkpoint-*.npz"


def save_checkpoint(run_dir, model, optimizer, state, best_theta=None):
    """Write the checkpoint of the epoch state["epoch"] and drop all but the newest KEEP."""
    os.makedirs(run_dir, exist_ok=True)
    opt = optimizer.state_dict()
    arrays = {f"optimizer.{k}": v for k, v in opt.items() if isinstance(v, np.ndarray)}
    meta = {**state, "model": model.metadata(),
            "optimizer": {k: v for k, v in opt.items() if not isinstance(v, np.ndarray)}}
    if model.mean is not None:
        arrays.update(scaler_mean=model.mean, scaler_inv_std=model.inv_std)
    if best_theta is not None:
        arrays["best_theta"] = best_theta
    path = os.path.join(run_dir, f"checkpoint-{state['epoch']:05d}.npz")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, theta=model.theta, state=np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8),
                     **arrays)
    for old in sorted(glob.glob(os.path.join(run_dir, PATTERN)))[:-KEEP]:
        os.remove(old)
    return path


def load_latest(run_dir):
    """(model, optimizer state dict, state) from the newest checkpoint in run_dir."""
    found = sorted(glob.glob(os.path.join(run_dir, PATTERN)))
    if not found:
        raise StreambpError(f"No checkpoint to resume from in {run_dir} (files {PATTERN}).")
    path = found[-1]
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        state = json.loads(arrays.pop("state").tobytes().decode("utf-8"))
    except (OSError, ValueError, KeyError) as e:
        raise StreambpError(f"Cannot read checkpoint {path}: {e}.") from None
    m = state.pop("model")
    model = Model(m["sizes"], arrays.pop("theta"), m["classes"], m["features"], m["label_type"], m["input_column"],
                  m["training"], arrays.pop("scaler_mean", None), arrays.pop("scaler_inv_std", None))
    optimizer = {**state.pop("optimizer"),
                 **{k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("optimizer.")}}
    state["best_theta"] = arrays.get("best_theta")
    return model, optimizer, state
