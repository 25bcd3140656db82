"""Log records as JSON lines, for the processes a deployment runs: the prediction server
and the spool compactor beside it write the same shape, so one log collector reads both.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency
    orjson = None  # type: ignore[assignment]

__all__ = ["JsonFormatter"]

# color_message: uvicorn's ANSI-coloured copy of msg
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extra fields}``; tracebacks go in ``exc``.

    Written with orjson when it is installed (one access line per request goes through
    here), the standard library otherwise or for what orjson refuses."""

    _second = -1
    _stamp = ""

    def _ts(self, created: float, msecs: float) -> str:
        second = int(created)
        if second != self._second:  # one strftime per second, not per line
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._stamp}.{int(msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self._ts(record.created, record.msecs),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if orjson is not None:
            try:
                return orjson.dumps(out, default=str).decode()
            except TypeError:  # e.g. an int past 64 bits: the standard library writes it
                pass
        return json.dumps(out, default=str, separators=(",", ":"))
