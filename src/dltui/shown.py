"""The one output boundary: text that came from outside, made safe to show on a terminal.

A server's reason phrase, an ETag, a file name, a URL or an input-file value may hold escape
sequences (``ESC ] 52`` sets the clipboard under tmux, ``ESC [ 2J`` clears the screen) or
bidirectional overrides that reorder what a person reads. Everything a person is shown passes
:func:`shown` (one value inside a line) or :class:`Boundary` (a whole stream of the CLI's own
lines): C0 and C1 controls, DEL and the bidi controls are written as visible escapes
(``\\x1b``, ``\\u202e``), so the bytes stay readable and inert.
"""

from __future__ import annotations

import re
from typing import TextIO

#: C0 (but for the line break a stream keeps), DEL, C1, and Unicode's bidi embeddings,
#: overrides and isolates plus the line and paragraph separators.
_INLINE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_STREAM = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def shown(text: object) -> str:
    """``text`` as one inert line: every control character escaped, line breaks included."""
    return _INLINE.sub(_escape, str(text))


class Boundary:
    """A text stream that escapes control characters in everything written through it but
    the line break: the CLI writes its own lines through this, so no value inside them can
    reach the terminal raw, whichever code path forgot to call :func:`shown`."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        """Write ``text`` with its controls escaped; returns the length given."""
        self.stream.write(_STREAM.sub(_escape, text))
        return len(text)

    def flush(self) -> None:
        """Flush the stream beneath."""
        self.stream.flush()

    def isatty(self) -> bool:
        """Whether the stream beneath is a terminal."""
        return self.stream.isatty()

    def fileno(self) -> int:
        """The stream's descriptor."""
        return self.stream.fileno()
