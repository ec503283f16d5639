"""Resumable training checkpoints, keyed by a fingerprint of what determines the result.

A checkpoint directory holds one ``state.safetensors``: model weights and
buffers, AdamW moments and steps, the random generator's state, and in its
metadata the epochs done and the history. It is replaced atomically, so a kill
at any moment leaves the previous checkpoint or the new one; loading never
unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from ..version import __version__
from ..export.atomic import atomic_write_bytes
from .. import faults
from ..config import ModelConfig, TrainConfig


def fingerprint(
    x: torch.Tensor, model_config: ModelConfig, train_config: TrainConfig, seed: int, init_from: torch.nn.Module | None = None
) -> str:
    """sha256 over the training data, both configs, the seed and the library version
    (and a warm start's initial weights, so a fresh build never resumes a warm one)."""
    h = hashlib.sha256()
    h.update(json.dumps([model_config.to_dict(), train_config.to_dict(), seed, __version__], sort_keys=True).encode())
    h.update(str(tuple(x.shape)).encode())
    h.update(np.ascontiguousarray(x.numpy()).tobytes())
    if init_from is not None:
        for name, value in sorted(init_from.state_dict().items()):
            h.update(name.encode())
            h.update(np.ascontiguousarray(value.detach().cpu().numpy()).tobytes())
    return h.hexdigest()[:24]


class Checkpoint:
    def __init__(self, root: str | Path, key: str):
        self.dir = Path(root) / key

    def exists(self) -> bool:
        return (self.dir / "state.safetensors").exists()

    def epochs_done(self) -> int:
        with safe_open(str(self.dir / "state.safetensors"), "pt") as fh:
            return int(fh.metadata()["epochs_done"])

    def save(self, epochs_done: int, model: torch.nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator, history: list[dict]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tensors = {f"model.{k}": v.detach().contiguous().clone() for k, v in model.state_dict().items()}
        for idx, state in opt.state_dict()["state"].items():
            for name, value in state.items():
                tensors[f"opt.{idx}.{name}"] = torch.as_tensor(value).detach().contiguous().clone()
        tensors["generator"] = gen.get_state().clone()
        # One file, replaced atomically: the epoch count and history travel with the state.
        meta = {"epochs_done": str(epochs_done), "history": json.dumps(history)}
        atomic_write_bytes(self.dir / "state.safetensors", save(tensors, metadata=meta))
        faults.point("checkpoint.saved")

    def load(self, model: torch.nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator) -> tuple[int, list[dict]]:
        path = str(self.dir / "state.safetensors")
        with safe_open(path, "pt") as fh:
            meta = fh.metadata()
        tensors = load_file(path)
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        state: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, idx, name = k.split(".", 2)
                state.setdefault(int(idx), {})[name] = v
        opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})
        gen.set_state(tensors["generator"])
        return int(meta["epochs_done"]), list(json.loads(meta["history"]))

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
