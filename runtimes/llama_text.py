"""Turning one stream's token pieces into text: UTF-8 that may split across tokens, and stop strings.

A piece of a multi-byte character waits for the rest; text that could be the start of a stop string waits until
it is clearly not one. When a stop string appears, the text before it is the last the client gets.
"""

from __future__ import annotations

import codecs


class TextStream:
    def __init__(self, stop: tuple[str, ...] = ()) -> None:
        self.stop = tuple(s for s in stop if s)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._held = ""  # decoded text not yet handed out (it may begin a stop string)
        self.stopped = False

    def add(self, piece: bytes) -> str:
        """The text that can be handed out now, given one more token's bytes."""
        if self.stopped:
            return ""
        self._held += self._decoder.decode(piece)
        if not self.stop:
            out, self._held = self._held, ""
            return out
        cut = self._first_stop()
        if cut is not None:
            self.stopped = True
            out, self._held = self._held[:cut], ""
            return out
        keep = self._partial_stop()
        out = self._held[: len(self._held) - keep]
        self._held = self._held[len(self._held) - keep :]
        return out

    def flush(self) -> str:
        """What is left once generation ends (an incomplete character becomes U+FFFD)."""
        if self.stopped:
            return ""
        out = self._held + self._decoder.decode(b"", final=True)
        self._held = ""
        return out

    def _first_stop(self) -> int | None:
        found = [i for i in (self._held.find(s) for s in self.stop) if i >= 0]
        return min(found) if found else None

    def _partial_stop(self) -> int:
        """How many trailing characters could be the beginning of a stop string."""
        longest = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(self._held)), longest, -1):
                if self._held.endswith(s[:n]):
                    longest = n
                    break
        return longest
