"""ONNX models (an ``onnx.ModelProto`` or a path to a ``.onnx`` file), run with onnxruntime.

Inference uses the CPU execution provider. Input names come from the graph: one array
feeds a single-input graph; a DataFrame feeds a multi-input graph column by column (as
skl2onnx builds them for mixed-type tables); a dict feeds inputs by name. The first
output is the prediction; an output whose name mentions "prob" is ``predict_proba``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gyre.errors import SchemaMismatch
from gyre.models._flavor import TaskInfo, distribution, import_library, inherits
from gyre.models._table import is_dataframe

__all__ = ["FLAVOR", "OnnxFlavor"]

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


def _is_onnx_path(model: Any) -> bool:
    return isinstance(model, str | os.PathLike) and str(model).endswith(".onnx")


def _probability_output(names: list[str]) -> int | None:
    return next((i for i, n in enumerate(names) if "prob" in n.lower()), None)


def _cast(value: Any, ort_type: str) -> Any:
    arr = value.to_numpy() if hasattr(value, "to_numpy") else np.asarray(value)
    dtype = _ORT_TYPES.get(ort_type)
    return arr if dtype is None else arr.astype(dtype, copy=False)


class OnnxFlavor:
    name = "onnx"

    def can_save(self, model: Any) -> bool:
        return _is_onnx_path(model) or inherits(model, "onnx", "ModelProto")

    def requirements(self) -> list[str]:
        return [distribution("onnxruntime"), "numpy"]

    def save(
        self, model: Any, path: Path, *, allow_pickle: bool, input_example: Any
    ) -> dict[str, Any]:
        onnx = import_library("onnx", extra="onnx")
        file = path / "model.onnx"
        if _is_onnx_path(model):
            shutil.copyfile(model, file)
            model = onnx.load(str(file))
        else:
            onnx.save_model(model, str(file))
        onnx.checker.check_model(model)
        return {
            "file": "model.onnx",
            "ir_version": int(model.ir_version),
            "opsets": {op.domain or "ai.onnx": int(op.version) for op in model.opset_import},
            "inputs": [i.name for i in model.graph.input],
            "outputs": [o.name for o in model.graph.output],
        }

    def task(self, model: Any) -> TaskInfo:
        if _is_onnx_path(model):
            model = import_library("onnx", extra="onnx").load(str(model))
        has_proba = _probability_output([o.name for o in model.graph.output]) is not None
        return TaskInfo("classifier" if has_proba else "unknown", None, has_proba)

    def load(self, path: Path, info: Mapping[str, Any]) -> Any:
        ort = import_library("onnxruntime", extra="onnx")
        return ort.InferenceSession(
            str(path / str(info["file"])), providers=["CPUExecutionProvider"]
        )

    @staticmethod
    def _feeds(session: Any, data: Any) -> dict[str, Any]:
        inputs = session.get_inputs()
        if isinstance(data, Mapping) or (is_dataframe(data) and len(inputs) > 1):
            missing = [i.name for i in inputs if i.name not in data]
            if missing:
                raise SchemaMismatch(
                    f"ONNX input {missing[0]!r} is missing",
                    hint=f"the graph reads: {', '.join(i.name for i in inputs)}",
                )
            feeds = {}
            for i in inputs:
                value = _cast(data[i.name], i.type)
                feeds[i.name] = (
                    value.reshape(-1, 1) if value.ndim == 1 and len(i.shape) == 2 else value
                )
            return feeds
        if len(inputs) != 1:
            raise SchemaMismatch(
                f"the ONNX graph has {len(inputs)} inputs, got one array",
                hint=f"send a dict with: {', '.join(i.name for i in inputs)}",
            )
        return {inputs[0].name: _cast(data, inputs[0].type)}

    def predict(self, obj: Any, data: Any) -> Any:
        return obj.run([obj.get_outputs()[0].name], self._feeds(obj, data))[0]

    def predict_proba(self, obj: Any, data: Any) -> Any | None:
        names = [o.name for o in obj.get_outputs()]
        index = _probability_output(names)
        if index is None:
            return None
        out = obj.run([names[index]], self._feeds(obj, data))[0]
        if isinstance(out, list):  # ZipMap: one {label: probability} per row
            return np.array([list(row.values()) for row in out], dtype=np.float64)
        return out


FLAVOR = OnnxFlavor()
