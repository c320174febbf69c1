"""Model configuration: a checkpoint's ``config.json`` as an attribute-style object with
Hugging Face's key names."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Union

from .safetensors import CheckpointError

MAX_CONFIG_BYTES = 10 * 2**20  # real configs are a few kB


class Config:
    """HF ``config.json`` contents; ``cfg.hidden_size``, ``cfg.get("rope_scaling")``."""

    def __init__(self, values: Dict[str, Any]):
        self.__dict__["_values"] = dict(values)

    @classmethod
    def from_dir(cls, directory: Union[str, os.PathLike]) -> "Config":
        path = Path(directory) / "config.json"
        try:
            size = path.stat().st_size
            if size > MAX_CONFIG_BYTES:
                raise CheckpointError(f"{path}: {size} bytes is too large for a model config")
            raw = path.read_bytes()
        except OSError as e:
            raise CheckpointError(f"{path}: cannot read the model config ({e.strerror})") from None
        try:
            values = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise CheckpointError(f"{path}: not valid JSON ({e.__class__.__name__}: {e})") from None
        if not isinstance(values, dict):
            raise CheckpointError(f"{path}: must hold a JSON object")
        return cls(values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"config has no {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self._values[name] = value

    def get(self, name: str, default: Any = None) -> Any:
        return self._values.get(name, default)

    def require(self, name: str, kind: type = int) -> Any:
        """A required key of the given type, or CheckpointError naming it."""
        value = self._values.get(name)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise CheckpointError(f"config.json: {name!r} must be a {kind.__name__}, got {value!r}")
        if kind is int and value <= 0:
            raise CheckpointError(f"config.json: {name!r} must be positive, got {value}")
        return value

    def to_dict(self) -> Dict[str, Any]:
        return dict(self._values)

    def __repr__(self) -> str:
        return f"Config({self._values.get('model_type', '?')}, {len(self._values)} keys)"
