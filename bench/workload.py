"""A workload of cumulative step programs in the rStar-Math style.

Each problem is a path of steps; the program of the node at depth k is the
first k steps, so the batch has one program per node, as a tree search
executes them. About 10% of programs raise, about 3% never finish (pure-Python
and C-level loops).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

STEP_KINDS = {
    "arith": [
        "# Step: total cost\nprice_{i} = {a} * {b}\ntotal_{i} = price_{i} + {c}",
        "# Step: split evenly\nshare_{i} = ({a} * {b} + {c}) / {d}\nprint(round(share_{i}, 3))",
        "# Step: percentage\nrate_{i} = {a} / 100\nafter_{i} = {b} * (1 - rate_{i})",
    ],
    "fractions": [
        "# Step: exact fractions\nfrom fractions import Fraction\nf_{i} = Fraction({a}, {d}) + Fraction({b}, {c})\nprint(f_{i})",
        "# Step: fraction power\nfrom fractions import Fraction\ng_{i} = Fraction({a}, {b}) ** 3",
    ],
    "sympy": [
        "# Step: solve the equation\nimport sympy as sp\nx = sp.symbols('x')\nroots_{i} = sp.solve(x**2 - {a}*x - {b}, x)\nprint(roots_{i})",
        "# Step: simplify\nimport sympy as sp\nx = sp.symbols('x')\ne_{i} = sp.simplify((x**2 - {a}**2) / (x - {a}))\nprint(e_{i})",
        "# Step: exact arithmetic\nfrom sympy import Rational, sqrt\nr_{i} = Rational({a}, {d}) + sqrt({b})\nprint(r_{i})",
        "# Step: system of equations\nimport sympy as sp\nu, v = sp.symbols('u v')\nsol_{i} = sp.solve([u + v - {a}, u - v - {b}], [u, v])\nprint(sol_{i})",
    ],
    "numpy": [
        "# Step: linear system\nimport numpy as np\nA_{i} = np.array([[{a}, 1.0], [1.0, {b}]])\nx_{i} = np.linalg.solve(A_{i}, [{c}, {d}])\nprint(x_{i})",
        "# Step: statistics\nimport numpy as np\nvals_{i} = np.arange({a}, {a} + {b})\nprint(vals_{i}.mean(), vals_{i}.std())",
    ],
    "loops": [
        "# Step: count with a loop\nimport itertools\ncount_{i} = sum(1 for p in itertools.permutations(range(6)) if p[0] < p[-1])\nprint(count_{i})",
        "# Step: search\nbest_{i} = max(n for n in range(1, {a} * 50) if n % {d} == {c} % {d})\nprint(best_{i})",
        "# Step: combinations\nfrom itertools import combinations\nways_{i} = sum(1 for s in combinations(range(12), 4) if sum(s) % {d} == 0)\nprint(ways_{i})",
    ],
}
ERROR_STEPS = [
    "# Step: divide\nratio = {a} / ({b} - {b})",
    "# Step: use the earlier result\nprint(undefined_value_{i} + 1)",
    "# Step: index\nitems = [1, 2, 3]\nprint(items[{a} + 10])",
    "# Step: solve\nimport sympy as sp\nsp.solve(sp.Symbol('x') ** 2 - 1, 'x', 'y', 'z', 1)",
]
ENDLESS_STEPS = [
    "# Step: iterate until convergence\nwhile True:\n    pass",
    "# Step: brute force\ntotal = sum(range(10 ** 13))",
    "# Step: search forever\nn = 0\nwhile n >= 0:\n    n += 1",
]


@dataclass(frozen=True)
class Program:
    steps: tuple[str, ...]
    kind: str  # "ok", "error" or "endless"
    problem: int = 0

    @property
    def source(self) -> str:
        return "\n".join(self.steps)


def _fill(template: str, rng: random.Random, i: int) -> str:
    a, b, c, d = (rng.randint(2, 20) for _ in range(4))
    return template.format(a=a, b=b, c=c, d=d, i=i)


def make_workload(n_problems: int = 52, seed: int = 0) -> list[Program]:
    """Cumulative step programs of `n_problems` paths (about 8 nodes each)."""
    rng = random.Random(seed)
    kinds = list(STEP_KINDS)
    programs: list[Program] = []
    for p in range(n_problems):
        depth = rng.randint(5, 10)
        steps: list[str] = []
        for k in range(depth):
            roll = rng.random()
            if roll < 0.112 and k > 0:
                # A failing step is a dead branch: its program is a node, but
                # the path continues from its parent.
                bad = _fill(rng.choice(ERROR_STEPS), rng, k)
                programs.append(Program(tuple(steps + [bad]), "error", p))
                continue
            if roll < 0.15 and k > 0:
                endless = rng.choice(ENDLESS_STEPS)
                programs.append(Program(tuple(steps + [endless]), "endless", p))
                continue
            template = rng.choice(STEP_KINDS[rng.choice(kinds)])
            steps.append(_fill(template, rng, p * 100 + k))
            programs.append(Program(tuple(steps), "ok", p))
    return programs


def tree_order(programs: list[Program]) -> list[Program]:
    """The programs as a batched tree search meets them: level by level over
    all problems, the children of one node next to each other."""
    return sorted(programs, key=lambda p: (len(p.steps), p.problem))
