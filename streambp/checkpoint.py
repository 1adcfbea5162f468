"""Checkpoints of a fit: parameters, optimizer state, stream position, history and settings.

RUN_DIR/checkpoint-eEEEE-sSSSSSSSSS.npz (epoch, global step; read with allow_pickle=False): `theta`, the
model's scaler arrays, every array of the optimizer's state_dict() as `optimizer.<name>`, `best_theta`
while early stopping tracks one, and `state`: UTF-8 JSON with the model's metadata, the optimizer's other
state, the epoch and the minibatches done in it (0 at its end), the global step, the history, the label
summary and the fit's settings. The learning-rate schedule and the shuffle are pure functions of the
step and of (seed, epoch), so the position restores them. Written atomically; the newest `keep` are kept.
"""
import glob
import json
import os

import numpy as np

from .atomic import atomic_path
from .errors import StreambpError
from .model import Model

PATTERN = "checkpoint-*.npz"


def latest(run_dir):
    """The newest checkpoint in run_dir, or None."""
    found = sorted(glob.glob(os.path.join(glob.escape(os.fspath(run_dir)), PATTERN)))
    return found[-1] if found else None


def save_checkpoint(run_dir, model, optimizer, state, best_theta=None, keep=3):
    """Write the checkpoint of state["epoch"] and state["steps"]; drop all but the newest `keep`."""
    os.makedirs(run_dir, exist_ok=True)
    opt = optimizer.state_dict()
    arrays = {f"optimizer.{k}": v for k, v in opt.items() if isinstance(v, np.ndarray)}
    meta = {**state, "model": model.metadata(),
            "optimizer": {k: v for k, v in opt.items() if not isinstance(v, np.ndarray)}}
    if model.mean is not None:
        arrays.update(scaler_mean=model.mean, scaler_inv_std=model.inv_std)
    if best_theta is not None:
        arrays["best_theta"] = best_theta
    path = os.path.join(run_dir, f"checkpoint-e{state['epoch']:04d}-s{state['steps']:09d}.npz")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, theta=model.theta, state=np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8),
                     **arrays)
    for old in sorted(glob.glob(os.path.join(glob.escape(run_dir), PATTERN)))[:-keep]:
        os.remove(old)
    return path


def load_latest(run_dir):
    """(model, optimizer state dict, state) from the newest checkpoint in run_dir."""
    path = latest(run_dir)
    if path is None:
        raise StreambpError(f"No checkpoint to resume from in {run_dir} (files {PATTERN}).")
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
