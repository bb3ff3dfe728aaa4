"""Training checkpoints as one safetensors file: tensors as tensors, everything else as JSON.

A checkpoint is any nested structure of dicts, lists, tuples, numbers, strings, None and tensors
(a model or optimiser state dict, RNG states, the early-stopping state, the history). Tensors go
into the safetensors body under their path in the structure (`model/target.layers.0.weight`), and
the structure itself, with each tensor replaced by a reference, goes into the file's JSON header.
Loading reads JSON and raw tensor bytes only: nothing is ever unpickled, so a checkpoint from
anywhere is safe to open.

Writes are atomic: a temporary file in the same folder, flushed to disk, then renamed over the old
checkpoint. A process killed at any moment leaves either the previous checkpoint or the new one,
never half a file (stray temporary files are ignored and cleaned up on the next save).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

FILE = "checkpoint.safetensors"
FORMAT = "hypernet-checkpoint"
VERSION = 1
_HEADER = "hypernet"
_TENSOR, _TUPLE, _ITEMS = "__tensor__", "__tuple__", "__items__"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or that belongs to a different run."""


def path_in(folder: str | Path) -> Path:
    return Path(folder) / FILE


def exists(folder: str | Path) -> bool:
    return path_in(folder).is_file()


# ---- structure <-> (JSON, tensors) -------------------------------------------------------------
def pack(obj: Any, tensors: dict[str, Tensor], path: str = "") -> Any:
    """`obj` with every tensor moved into `tensors` (keyed by its path) and replaced by a reference."""
    if isinstance(obj, Tensor):
        key, n = path or "tensor", 1
        while key in tensors:  # only when keys of different types print alike ({1: ..., "1": ...})
            key, n = f"{path}#{n}", n + 1
        # A private copy: safetensors refuses tensors sharing memory, and the caller keeps training.
        tensors[key] = obj.detach().to("cpu", copy=True).contiguous()
        return {_TENSOR: key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: pack(v, tensors, _join(path, k)) for k, v in obj.items()}
        return {_ITEMS: [[pack(k, tensors, _join(path, f"key{i}")),
                          pack(v, tensors, _join(path, k if isinstance(k, (str, int)) else i))]
                         for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, tuple):
        return {_TUPLE: [pack(v, tensors, _join(path, i)) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [pack(v, tensors, _join(path, i)) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "item") and getattr(obj, "shape", None) == ():  # numpy scalars
        return obj.item()
    raise TypeError(f"cannot checkpoint a {type(obj).__name__} at {path or '<root>'!r}: use tensors, numbers, "
                    "strings, lists, tuples and dicts")


def _join(path: str, key: object) -> str:
    return f"{path}/{key}" if path else str(key)


def unpack(obj: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, list):
        return [unpack(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if set(obj) == {_TENSOR}:
            if obj[_TENSOR] not in tensors:
                raise CheckpointError(f"the checkpoint refers to a tensor {obj[_TENSOR]!r} it does not hold")
            return tensors[obj[_TENSOR]]
        if set(obj) == {_TUPLE}:
            return tuple(unpack(v, tensors) for v in obj[_TUPLE])
        if set(obj) == {_ITEMS}:
            return {unpack(k, tensors): unpack(v, tensors) for k, v in obj[_ITEMS]}
        return {k: unpack(v, tensors) for k, v in obj.items()}
    return obj


# ---- files -------------------------------------------------------------------------------------
def save(folder: str | Path, state: dict) -> Path:
    """Write `state` to `<folder>/checkpoint.safetensors` atomically (and durably: fsync before rename)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, Tensor] = {}
    header = {"format": FORMAT, "version": VERSION, "state": pack(state, tensors)}
    target = path_in(folder)
    for stale in folder.glob(f".{FILE}.*.tmp"):  # left by a process killed while writing
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{FILE}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={_HEADER: json.dumps(header)})
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a checkpoint is as readable as any other output
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _fsync_dir(folder)
    return target


def load(folder: str | Path, device: str | torch.device = "cpu") -> dict | None:
    """The state saved in `folder`, or None when there is no checkpoint there."""
    path = path_in(folder)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint ({exc}); delete it to start over") from exc
    try:
        header = json.loads(meta[_HEADER])
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is a safetensors file but not a hypernet checkpoint") from exc
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise CheckpointError(f"{path}: unsupported checkpoint format {header.get('format')!r} "
                              f"version {header.get('version')!r} (this code reads {FORMAT} {VERSION})")
    return unpack(header["state"], tensors)


def peek(folder: str | Path) -> dict:
    """The non-tensor part of a checkpoint (step, history, ...) without loading any tensor."""
    path = path_in(folder)
    with safe_open(str(path), framework="pt") as f:
        header = json.loads((f.metadata() or {})[_HEADER])
    return unpack(header["state"], _Placeholder())


class _Placeholder(dict):
    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> None:
        return None


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
