"""PyTorch ``nn.Module``s, saved as TorchScript: no pickle of Python objects.

``torch.jit.script`` first; when the module cannot be scripted it is traced with the input
example (so pass one). Predictions run under ``torch.no_grad()`` on float32 tensors and
come back as numpy arrays.

TorchScript is deprecated as of torch 2.13 (every ``torch.jit`` call warns); the warnings
are silenced here, where the choice was made, until the flavor moves to ``torch.export``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from gyre.errors import InvalidArgument
from gyre.models._flavor import TaskInfo, import_library, inherits
from gyre.models._table import is_dataframe

__all__ = ["FLAVOR", "TorchFlavor"]


@contextmanager
def _quiet_jit() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=DeprecationWarning)
        yield


def _tensors(torch: Any, data: Any) -> list[Any]:
    items = list(data.values()) if isinstance(data, Mapping) else [data]
    out = []
    for item in items:
        arr = item.to_numpy() if is_dataframe(item) else item
        out.append(torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)))
    return out


def _numpy(out: Any) -> Any:
    if isinstance(out, tuple | list):
        return tuple(_numpy(o) for o in out)
    if isinstance(out, Mapping):
        return {k: _numpy(v) for k, v in out.items()}
    return out.detach().cpu().numpy()


class TorchFlavor:
    name = "torch"

    def can_save(self, model: Any) -> bool:
        return not isinstance(model, type) and inherits(model, "torch", "Module")

    def requirements(self) -> list[str]:
        return ["torch", "numpy"]

    def save(
        self, model: Any, path: Path, *, allow_pickle: bool, input_example: Any
    ) -> dict[str, Any]:
        torch = import_library("torch", extra="torch")
        model.eval()
        with _quiet_jit():
            try:
                compiled, method = torch.jit.script(model), "script"
            except Exception as exc:
                if input_example is None:
                    raise InvalidArgument(
                        f"torch.jit.script cannot compile {type(model).__name__} "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
                        hint="pass input_example so the model can be traced instead",
                    ) from exc
                compiled = torch.jit.trace(model, tuple(_tensors(torch, input_example)))
                method = "trace"
            compiled.save(str(path / "model.pt"))
        return {"file": "model.pt", "method": method}

    def task(self, model: Any) -> TaskInfo:
        return TaskInfo()

    def load(self, path: Path, info: Mapping[str, Any]) -> Any:
        torch = import_library("torch", extra="torch")
        with _quiet_jit():
            module = torch.jit.load(str(path / str(info["file"])), map_location="cpu")
        return module.eval()

    def predict(self, obj: Any, data: Any) -> Any:
        torch = import_library("torch", extra="torch")
        with torch.no_grad():
            return _numpy(obj(*_tensors(torch, data)))

    def predict_proba(self, obj: Any, data: Any) -> Any | None:
        return None


FLAVOR = TorchFlavor()
