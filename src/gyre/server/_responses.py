"""The JSON response every route sends.

Unlike Starlette's, it lets NaN and infinities through (as Python's ``json`` writes them):
free-form payloads such as gate reports may hold them, and gyre's own clients read them
back. Metric values never need this: they travel as the strings "NaN", "Infinity".
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse

__all__ = ["JSON"]


class JSON(JSONResponse):
    """A compact JSON response that allows non-finite floats."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()
