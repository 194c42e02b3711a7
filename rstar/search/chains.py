"""Independent chains: every problem's root gets n samples and every later
node one (greedy decoding at temperature 0 with n = 1), as majority vote and
best-of-N need."""

from __future__ import annotations

from rstar.search.expand import Context, expand
from rstar.search.tree import Tree


def run_chains(trees: list[Tree], ctx: Context, n: int, temperature: float | None = None) -> None:
    """n independent solutions per tree: the root gets n samples, every later
    node one. Temperature 0 with n = 1 is greedy decoding. A PPM scores the
    finished solutions only (best-of-N reads nothing else)."""
    heads = expand(
        [(t, t.root) for t in trees], ctx, n=n, temperature=temperature, score="terminals", single_answer=False
    )
    while heads := [(t, nd) for t, nd in heads if not nd.terminal]:
        heads = expand(heads, ctx, n=1, temperature=temperature, score="terminals", single_answer=False)
