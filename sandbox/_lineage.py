"""Programs given as strings, cut into the steps of the programs seen before them.

A tree search that sends each node's whole program as one string (through
SandboxFusion's `run_code`, say) sends a parent's program, then its
children's, each the parent's text and a few more lines. Cut along the
parent's steps, a child runs from the parent's snapshot and executes only its
new lines, as when the caller gives steps itself. The cut never changes a
result: the steps are the child's own text cut at line ends, and they join to
exactly that text (the zygote runs it whole when the pieces do not parse
alone). A string that extends no program seen before stays a string.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from sandbox._sandbox import TRAILING_SPACE, Program

MAX_PROGRAMS = 100_000  # programs remembered (a digest and their steps' first lines each)
MAX_CHARS = 1 << 16  # longer strings are neither cut nor remembered: hashing is linear in them


class Lineage:
    """Remembers the programs it is given (a digest of their text without
    trailing whitespace) and where their steps start; least recently used go
    first."""

    def __init__(self, max_programs: int = MAX_PROGRAMS):
        self.max_programs = max_programs
        self._starts: OrderedDict[bytes, tuple[int, ...]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._starts)

    def split(self, code: str) -> Program:
        """`code` as the steps of the longest program seen before that it
        extends at a line end, plus the rest as one step; else `code`."""
        text = code.rstrip(TRAILING_SPACE)
        if not text or len(code) > MAX_CHARS:
            return code
        lines = code.split("\n")
        starts = self._parent_starts(lines)
        steps: Program = code
        if starts is not None:
            bounds = (*starts, len(lines))
            steps = ["\n".join(lines[a:b]) for a, b in zip(bounds, bounds[1:])]
        else:
            starts = (0,)
        self._remember(text, starts)
        return steps

    def _parent_starts(self, lines: list[str]) -> tuple[int, ...] | None:
        """The step starts of the longest remembered program whose text is
        `lines[:m]` for some m < len(lines), with m appended; None if none."""
        h = hashlib.blake2b(digest_size=16)
        found, found_key = None, b""
        for m, line in enumerate(lines[:-1], 1):
            h.update(line.encode("utf-8", "surrogatepass"))
            if line and line[-1] not in TRAILING_SPACE:  # a remembered text could end here
                key = h.copy().digest()
                starts = self._starts.get(key)
                if starts is not None:
                    found, found_key = (*starts, m), key
            h.update(b"\n")
        if found is not None:
            self._starts.move_to_end(found_key)
        return found

    def _remember(self, text: str, starts: tuple[int, ...]) -> None:
        key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        self._starts[key] = starts
        self._starts.move_to_end(key)
        while len(self._starts) > self.max_programs:
            self._starts.popitem(last=False)
