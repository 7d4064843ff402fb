"""A failing handler's traceback as it is kept with its task: at most ``TRACEBACK_LIMIT``
bytes of UTF-8, its end kept (the innermost frames and the exception line matter most).

One rule for both sides: the worker bounds what it sends (workers/attempt.py) and the
aggregate bounds what it records (domain/task.py), so an old or foreign worker cannot
store more.
"""

from __future__ import annotations

TRACEBACK_LIMIT = 8192  # bytes of UTF-8, the marker included


def bounded_traceback(text: str | None, limit: int = TRACEBACK_LIMIT) -> str | None:
    """``text`` whole if it fits in ``limit`` bytes of UTF-8; else its end, after a marker
    ``…(truncated N bytes)\\n`` (N: the bytes left out), never splitting a character.
    A lone surrogate (not UTF-8) is escaped (``\\udc80``)."""
    if text is None:
        return None
    data = text.encode("utf-8", "backslashreplace")  # a lone surrogate: escaped
    if len(data) <= limit:
        return data.decode("utf-8")
    cut = len(data) - limit
    while True:
        marker = f"…(truncated {cut} bytes)\n".encode()
        keep = limit - len(marker)
        start = len(data) - keep
        while start < len(data) and data[start] & 0xC0 == 0x80:  # a continuation byte
            start += 1
        if start == cut:
            break
        cut = start  # the marker's number grew or a character was not split: again
    return (marker + data[start:]).decode("utf-8")
