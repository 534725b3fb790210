"""JSON lines: one object a line, checked for the keys it must have, with errors that name the
file and the line (the rejects report, JSONL input lists)."""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator, Sequence, Tuple, Type


def json_objects(text: str, path: str, required: Sequence[str],
                 error: Type[Exception]) -> Iterator[Tuple[int, Dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of ``text``; a line that is not JSON,
    or not an object holding every key of ``required``, raises ``error`` naming
    ``path:line``."""
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise error(f"{path}:{lineno}: not valid JSON: {e}") from None
        if not isinstance(obj, dict) or any(k not in obj for k in required):
            keys = " and ".join(repr(k) for k in required)
            raise error(f"{path}:{lineno}: expected an object with {keys}")
        yield lineno, obj
