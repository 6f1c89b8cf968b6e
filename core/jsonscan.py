"""A linear pre-scan of JSON text: how deep it nests and how many items it holds, without
parsing it.

Parsers recurse: Python's ``json`` raises ``RecursionError`` on a few thousand nested brackets,
and polars' NDJSON reader crashes the process (a segmentation fault) on a few hundred thousand.
Each body is therefore scanned first, in a few vectorized passes (numpy) over its bytes, and
refused when it nests deeper or holds more items than the service ever needs.

Brackets and commas inside strings do not count: a quote is a string delimiter unless an odd run
of backslashes precedes it. The text need not be well-formed; the parser that runs afterwards
judges that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_QUOTE, _BACKSLASH, _COMMA = 34, 92, 44
_OPEN = (91, 123)  # [ {
_CLOSE = (93, 125)  # ] }
_DELTA = np.zeros(256, dtype=np.int8)
_DELTA[list(_OPEN)] = 1
_DELTA[list(_CLOSE)] = -1

# The limits of every JSON request body of the API (not submissions, whose records are flat).
MAX_DEPTH = 32
MAX_ITEMS = 100_000


@dataclass(frozen=True)
class JsonShape:
    depth: int  # the deepest nesting of arrays and objects (0: a scalar)
    items: int  # separators (commas) outside strings, plus one per non-empty text: >= elements


def _unescaped_quotes(arr: np.ndarray) -> np.ndarray:
    quotes = np.flatnonzero(arr == _QUOTE)
    if not quotes.size:
        return quotes
    backslash = arr == _BACKSLASH
    before = quotes - 1
    suspects = before >= 0
    suspects[suspects] = backslash[before[suspects]]
    if not suspects.any():
        return quotes
    # The run of backslashes ending just before each quote: the distance to the last byte
    # before it that is not a backslash.
    index = np.arange(arr.size)
    last_other = np.maximum.accumulate(np.where(backslash, -1, index))
    runs = before[suspects] - last_other[before[suspects]]
    keep = np.ones(quotes.size, dtype=bool)
    keep[np.flatnonzero(suspects)[runs % 2 == 1]] = False
    return quotes[keep]


def shape(data: bytes, *, count_items: bool = True) -> JsonShape:
    """The nesting depth and (unless ``count_items`` is false, when ``items`` is 0) the item
    count of ``data``, in time linear in its length: a few comparisons of every byte, then work
    on the brackets and quotes only."""
    if not data:
        return JsonShape(0, 0)
    arr = np.frombuffer(data, dtype=np.uint8)
    # Elementwise comparisons are faster here than a table lookup or np.isin.
    mask = (arr == _OPEN[0]) | (arr == _OPEN[1]) | (arr == _CLOSE[0]) | (arr == _CLOSE[1])
    if count_items:
        mask |= arr == _COMMA
    positions = np.flatnonzero(mask)
    if positions.size:
        quotes = _unescaped_quotes(arr)
        # Outside a string: an even number of unescaped quotes before the position.
        outside = (np.searchsorted(quotes, positions) % 2) == 0
        positions = positions[outside]
    chars = arr[positions]
    delta = _DELTA[chars]
    depth = int(np.cumsum(delta, dtype=np.int64).max()) if delta.size else 0
    items = int(np.count_nonzero(chars == _COMMA)) + 1 if count_items else 0
    return JsonShape(max(depth, 0), items)


def within(data: bytes, max_depth: int = MAX_DEPTH, max_items: int = MAX_ITEMS) -> str | None:
    """None if ``data`` is within the limits, else what is wrong (a message for the caller)."""
    found = shape(data)
    if found.depth > max_depth:
        return f"The JSON body nests deeper than {max_depth} levels."
    if found.items > max_items:
        return f"The JSON body holds more than {max_items} items."
    return None
