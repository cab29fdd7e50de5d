"""Checkpoints as safetensors plus a JSON sidecar: nothing is ever unpickled.

A checkpoint is two files written in order, each atomically:

* ``<stem>.safetensors``: tensors only (model parameters and buffers under
  ``model.``, optimizer state under ``optim.``, masks under ``mask.``, RNG state);
* ``<stem>.json``: everything else (epoch, step, history, optimizer settings,
  the run's configuration) and the SHA-256 of the tensor file.

A sidecar is written only after its tensor file is complete, and a reader takes
the newest sidecar whose tensor file matches its checksum, so a kill at any
moment leaves the previous checkpoint usable.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from ..cache import atomic_write_bytes

__all__ = ["save_checkpoint", "load_checkpoint", "latest_checkpoint", "save_model", "load_model",
           "load_state_checked", "CheckpointError"]


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model or is damaged; the message lists the differences."""


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors, plain_state = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{pid}.{k}"] = v.detach().cpu().contiguous().clone()
            else:
                plain_state.setdefault(str(pid), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "plain_state": plain_state}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, t in tensors.items():
        if name.startswith("optim."):
            _, pid, k = name.split(".", 2)
            state.setdefault(int(pid), {})[k] = t
    for pid, st in meta.get("plain_state", {}).items():
        state.setdefault(int(pid), {}).update(st)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(path_stem: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    masks: dict[str, torch.Tensor] | None = None, meta: dict[str, Any] | None = None,
                    extra_tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``<stem>.safetensors`` then ``<stem>.json``; returns the sidecar's path."""
    stem = Path(path_stem)
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    meta = dict(meta or {})
    if optimizer is not None:
        opt_t, opt_meta = _flatten_optimizer(optimizer)
        tensors.update(opt_t)
        meta["optimizer"] = opt_meta
    for k, v in (masks or {}).items():
        tensors[f"mask.{k}"] = v.detach().cpu().contiguous().clone()
    for k, v in (extra_tensors or {}).items():
        tensors[f"extra.{k}"] = v.detach().cpu().contiguous().clone()
    data = st_save(tensors)
    atomic_write_bytes(stem.with_suffix(".safetensors"), data)
    meta["tensors_sha256"] = hashlib.sha256(data).hexdigest()
    meta["tensors_file"] = stem.with_suffix(".safetensors").name
    meta["model_class"] = type(model).__name__
    for attr in ("model_name", "model_kwargs"):
        if hasattr(model, attr):
            meta[attr] = getattr(model, attr)
    sidecar = stem.with_suffix(".json")
    atomic_write_bytes(sidecar, json.dumps(meta, indent=1, allow_nan=True).encode())
    return sidecar


def _read_pair(sidecar: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{sidecar} is not a readable JSON sidecar ({e})") from e
    if not isinstance(meta, dict) or "tensors_file" not in meta or "tensors_sha256" not in meta:
        raise CheckpointError(f"{sidecar} is not a workbench checkpoint sidecar (no tensors_file / tensors_sha256)")
    name = meta["tensors_file"]
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise CheckpointError(f"{sidecar} names tensors_file {name!r}; it must be a plain file name next to the sidecar")
    tfile = sidecar.parent / name
    try:
        data = tfile.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{sidecar} names {tfile.name}, which cannot be read ({e})") from e
    if hashlib.sha256(data).hexdigest() != meta["tensors_sha256"]:
        raise CheckpointError(f"{tfile} does not match the checksum in {sidecar.name}: it is damaged or from another save")
    try:
        tensors = st_load(data)
    except Exception as e:
        raise CheckpointError(f"{tfile} is not a valid safetensors file ({e})") from e
    return tensors, meta


def latest_checkpoint(folder: str | Path, prefix: str = "ckpt") -> Path | None:
    """The newest sidecar in ``folder`` whose tensor file is intact, or ``None``."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    candidates = sorted(folder.glob(f"{prefix}-*.json"), key=lambda p: p.stem, reverse=True)
    for c in candidates:
        try:
            _read_pair(c)
            return c
        except CheckpointError:
            continue
    return None


def resume_point(folder: str | Path | None, prefix: str, config: dict[str, Any], resume: bool = True,
                 what: str = "run") -> Path | None:
    """Where a small loop of its own (a GAN's two players, a controller) resumes: the newest intact
    ``prefix`` checkpoint in ``folder`` made with the same ``config``, or ``None`` to start afresh.

    ``resume=False`` deletes the folder's ``prefix`` checkpoints first; a checkpoint of another
    configuration is a :class:`CheckpointError` that names what differs."""
    if folder is None:
        return None
    folder = Path(folder)
    if not resume:
        for p in list(folder.glob(f"{prefix}-*.json")) + list(folder.glob(f"{prefix}-*.safetensors")):
            p.unlink()
    found = latest_checkpoint(folder, prefix=prefix)
    if found is not None:
        old = json.loads(found.read_text()).get("config", {})
        diff = [f"{k}: checkpoint {old.get(k)!r} vs now {v!r}" for k, v in config.items() if old.get(k) != v]
        if diff:
            raise CheckpointError(f"{found} is from a different {what} ({'; '.join(diff[:5])}). Use another "
                                  "checkpoint_dir, or resume=False to start over")
    return found


def load_state_checked(model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """``model.load_state_dict(state)`` after checking names, shapes and dtypes; lists every difference."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape = [f"{k}: model {tuple(own[k].shape)} vs {source} {tuple(state[k].shape)}"
             for k in own if k in state and own[k].shape != state[k].shape]
    dtype = [f"{k}: model {own[k].dtype} vs {source} {state[k].dtype}"
             for k in own if k in state and own[k].shape == state[k].shape and own[k].dtype != state[k].dtype]
    problems = []
    if missing:
        problems.append(f"missing in {source}: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    if unexpected:
        problems.append(f"not in the model: {', '.join(unexpected[:8])}{' ...' if len(unexpected) > 8 else ''}")
    if shape:
        problems.append("shape differs: " + "; ".join(shape[:8]))
    if dtype:
        problems.append("dtype differs: " + "; ".join(dtype[:8]))
    if problems:
        raise CheckpointError(
            f"the {source} does not fit this {type(model).__name__}: " + " | ".join(problems)
            + ". It was probably saved from another architecture or size: create the model with the same name and arguments"
        )
    with torch.no_grad():
        for k, v in own.items():
            v.copy_(state[k])


def load_checkpoint(sidecar: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None
                    ) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Restore a model (and optimizer) in place; returns ``(meta, masks, extra_tensors)``."""
    tensors, meta = _read_pair(Path(sidecar))
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    load_state_checked(model, state, f"checkpoint {Path(sidecar).name}")
    if optimizer is not None and "optimizer" in meta:
        sd = _unflatten_optimizer(tensors, meta["optimizer"])
        dev = next((p.device for g in optimizer.param_groups for p in g["params"]), torch.device("cpu"))
        sd["state"] = {pid: {k: (v.to(dev) if isinstance(v, torch.Tensor) and k != "step" else v) for k, v in st.items()}
                       for pid, st in sd["state"].items()}
        optimizer.load_state_dict(sd)
    masks = {k[len("mask."):]: v for k, v in tensors.items() if k.startswith("mask.")}
    extra = {k[len("extra."):]: v for k, v in tensors.items() if k.startswith("extra.")}
    return meta, masks, extra


def save_model(model: nn.Module, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Save a model's weights (``path`` with or without suffix); registry models can be rebuilt by :func:`load_model`."""
    return save_checkpoint(Path(path).with_suffix(""), model, meta=meta)


def load_model(path: str | Path, model: nn.Module | None = None, device: torch.device | str = "cpu") -> nn.Module:
    """Load weights saved by :func:`save_model` into ``model``, or rebuild a registry model from the sidecar."""
    sidecar = Path(path).with_suffix(".json")
    if model is None:
        tensors, meta = _read_pair(sidecar)
        name, kwargs = meta.get("model_name"), meta.get("model_kwargs", {})
        if not isinstance(name, str) or not isinstance(kwargs, dict):
            raise CheckpointError(f"{sidecar} does not name a registry model; pass model= to load into")
        from ..models import create_model
        try:
            with torch.device("meta"):  # shapes only: a sidecar cannot make us allocate an absurd model
                skeleton = create_model(name, **kwargs)
        except Exception as e:  # noqa: BLE001 (whatever the arguments break, the file is at fault)
            raise CheckpointError(f"{sidecar} names model {name!r} with arguments {kwargs}, which fail: {e}") from e
        state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        load_state_checked(skeleton, state, f"checkpoint {sidecar.name}")  # names, shapes, dtypes, before building
        model = create_model(name, **kwargs)
    load_checkpoint(sidecar, model)
    return model.to(device)
