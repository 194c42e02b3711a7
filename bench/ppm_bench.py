"""Does the PPM help? Step pairs synthesised on the CPU with the cpu-demo's
models, a PPM trained on them, and what it does on held-out problems.

    python bench/ppm_bench.py --workdir runs/ppm-bench [--pool-size 120] [--tuned-pool-size 320] [--rollouts 8]
        [--heldout-size 60] [--n 16] [--curve 50 100 200 0] [--ppm-base policy] [--ppm-bf16] [key=value ...]

Stages, each kept in the work folder so that a rerun continues (and a rerun
with another --ppm-base or --ppm-epochs reuses the search and the policy):

1. search: terminal-guided MCTS over `arith_train` with the cpu-demo's
   round-1 settings (the 0.5B bootstrap model, 2 code errors in a row),
   more problems and rollouts than the demo;
2. data: the pool's problems split by problem (seeded, 80/20); SFT records
   and PPM pairs (the reference's rules) from each side;
3. policy: SFT of the 135M model on the train side's solutions; with
   --tuned-pool-size, that policy searches further pool problems as round 2
   would (1 code error ends a branch), split and extracted the same way, and
   the PPMs train on the pairs of both searches;
4. PPMs trained on 50 / 100 / 200 / all train pairs (the learning curve);
5. held-out pairwise accuracy of step pairs and of final-answer pairs;
   on `arith_test`: N samples per problem from the policy, and majority
   vote, PPM best-of-N and PPM-weighted vote over the same samples at
   N = 1, 2, 4, ... (each PPM of the curve); greedy; PPM-guided step beam
   search and MCTS (`rstar eval --mode beam / mcts`).

Every accuracy has its standard error, sqrt(p (1 - p) / n). Prints the tables
and writes bench/results/ppm.json (or --out).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from report import save_report  # noqa: E402

from rstar.config import load_config, with_policy  # noqa: E402
from rstar.data import load_problems  # noqa: E402
from rstar.evolve import majority  # noqa: E402
from rstar.prompts import sft_prompt  # noqa: E402
from rstar.runs.evaluate import evaluate  # noqa: E402
from rstar.runs.search import search_problems  # noqa: E402
from rstar.runs.store import read_jsonl, read_trees, write_atomic  # noqa: E402
from rstar.runs.workers import KeptEngine, search_context  # noqa: E402
from rstar.search.answers import terminals, weight  # noqa: E402
from rstar.search.chains import run_chains  # noqa: E402
from rstar.search.expand import partial_solution  # noqa: E402
from rstar.search.tree import Tree  # noqa: E402
from rstar.train.extract import PairCounts, ppm_pairs, sft_records  # noqa: E402


def se(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n) if n else float("nan")


def pct(p: float, n: int) -> str:
    return f"{p:.1%} ± {se(p, n):.1%} (n={n})"


def jsonl(path: Path, rows: list[dict]) -> None:
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


def split_problems(ids: list[str], seed: int, held_fraction: float) -> set[str]:
    order = sorted(ids)
    random.Random(seed).shuffle(order)
    return set(order[: max(1, int(len(order) * held_fraction))])


def stage_data(folder: Path, trees: list[Tree], config, seed: int) -> dict:
    """SFT records and pairs of each side of the split (written once per set of
    searched problems: a search that went on to more problems splits again)."""
    done = folder / "split.json"
    searched = sorted(t.problem_id for t in trees)
    if done.exists():
        split = json.loads(done.read_text())
        if split.get("problems") == searched:
            return split
    held = split_problems(searched, seed, 0.2)
    counts = {"train": PairCounts(), "held": PairCounts()}
    sides = {
        "train": [t for t in trees if t.problem_id not in held],
        "held": [t for t in trees if t.problem_id in held],
    }
    for side, group in sides.items():
        jsonl(folder / f"sft-{side}.jsonl", [r for t in group for r in sft_records(t, config.extract)])
        jsonl(folder / f"pairs-{side}.jsonl", [p for t in group for p in ppm_pairs(t, config.extract, counts[side])])
    split = {"problems": searched, "held_problems": sorted(held), "counts": {k: dict(v) for k, v in counts.items()}}
    write_atomic(done, json.dumps(split, indent=2))
    return split


def subsample(rows: list[dict], size: int, seed: int) -> list[dict]:
    if not size or size >= len(rows):
        return rows
    keep = sorted(random.Random(seed).sample(range(len(rows)), size))
    return [rows[i] for i in keep]


def pair_accuracy(scorer, pairs: list[dict]) -> dict:
    out = {}
    for kind in ("step", "answer"):
        group = [p for p in pairs if p["kind"] == kind]
        if not group:
            out[kind] = {"n": 0, "accuracy": None}
            continue
        pos = scorer.score([p["prefix"] + p["positive"] for p in group])
        neg = scorer.score([p["prefix"] + p["negative"] for p in group])
        acc = sum(a > b for a, b in zip(pos, neg)) / len(group)
        out[kind] = {"n": len(group), "accuracy": acc, "se": se(acc, len(group))}
    return out


def stage_samples(work: Path, heldout, config, policy: str, n: int) -> list[dict]:
    """n sampled solutions per held-out problem (texts kept, so every PPM of
    the curve scores the same samples)."""
    path = work / "samples.jsonl"
    rows = read_jsonl(path)
    done = {r["id"] for r in rows}
    todo = [p for p in heldout if p.id not in done]
    if todo:
        cfg = with_policy(config, policy, True)
        with search_context(cfg) as ctx:
            for i in range(0, len(todo), cfg.batch_problems):
                batch = todo[i : i + cfg.batch_problems]
                trees = [Tree(p.id, p.question, p.answer) for p in batch]
                run_chains(trees, ctx, n=n)
                new = []
                for p, t in zip(batch, trees):
                    samples = []
                    for node in terminals(t):
                        text = sft_prompt(t.question) + partial_solution(t, node)
                        samples += [{"answer": node.answer, "correct": bool(node.correct), "text": text}] * weight(
                            t, node
                        )
                    new.append({"id": p.id, "samples": samples[:n]})
                with open(path, "a") as f:
                    for row in new:
                        f.write(json.dumps(row) + "\n")
                rows += new
                print(f"  sampled {len(rows)}/{len(heldout)} problems", flush=True)
    return rows


def vote_curves(rows: list[dict], scores: list[list[float]], ks: list[int]) -> dict:
    """Accuracy at each k of majority vote, PPM best-of-k and PPM-weighted vote
    (answers' scores summed, as the reference's weighted vote) over the first
    k samples."""
    out = {"k": ks, "majority": [], "best_of_n": [], "weighted": []}
    for k in ks:
        maj = bon = wtd = 0
        for row, sc in zip(rows, scores):
            first = [(s, v) for s, v in zip(row["samples"][:k], sc[:k]) if s["answer"] is not None]
            if not first:
                continue
            grade = {s["answer"]: s["correct"] for s, _ in first}
            winner = majority([(s["answer"], 1) for s, _ in first])
            maj += bool(grade.get(winner))
            bon += max(first, key=lambda sv: sv[1])[0]["correct"]
            weighted = majority([(s["answer"], v) for s, v in first])  # scores summed per answer
            wtd += bool(grade.get(weighted))
        n = len(rows)
        for key, hits in (("majority", maj), ("best_of_n", bon), ("weighted", wtd)):
            out[key].append({"accuracy": hits / n, "se": se(hits / n, n)})
    return out


def _counts(summary) -> dict:
    return {k: getattr(summary, k) for k in ("problems", "solved", "nodes", "steps_failed")}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/ppm-bench")
    parser.add_argument("--pool-size", type=int, default=120)
    parser.add_argument("--rollouts", type=int, default=8)
    parser.add_argument("--candidates", type=int, default=None, help="per expansion (default: the preset's)")
    parser.add_argument("--searcher", default=None, help="search model (default: the cpu-demo's bootstrap)")
    parser.add_argument(
        "--tuned-pool-size",
        type=int,
        default=0,
        help="further pool problems searched by the SFT policy, as a second round would",
    )
    parser.add_argument("--heldout-size", type=int, default=60)
    parser.add_argument(
        "--guided-size", type=int, default=30, help="held-out problems for greedy / beam / MCTS (0: skip them)"
    )
    parser.add_argument("--n", type=int, default=16, help="samples per held-out problem")
    parser.add_argument("--curve", type=int, nargs="+", default=[50, 100, 200, 0], help="PPM train pairs (0: all)")
    parser.add_argument("--ppm-base", default="policy", help="policy (the SFT policy) or a model name")
    parser.add_argument("--ppm-epochs", type=float, default=None)
    parser.add_argument(
        "--ppm-bf16", action="store_true", help="the PPM backbone in bfloat16 (AVX512-BF16 CPU: 2-4x faster)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="cpu-demo", help="cpu-demo (tiny: a smoke run of the script)")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "ppm.json"))
    parser.add_argument("overrides", nargs="*", help="preset overrides, section.key=value")
    args = parser.parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = "1"
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    config = load_config(args.preset, args.overrides)
    ev = config.evolve
    seconds: dict[str, float] = {}

    # 1. search, as the demo's round 1 (bootstrap model, its errors threshold), scaled up
    t0 = time.perf_counter()
    pool = load_problems(ev.pool, args.pool_size)
    searcher = args.searcher or ev.bootstrap or config.engine.model
    search_cfg = with_policy(config, searcher, bool(args.searcher))
    search_cfg = dataclasses.replace(
        search_cfg,
        expand=dataclasses.replace(
            search_cfg.expand,
            errors_threshold=ev.bootstrap_errors_threshold,
            candidates=args.candidates or search_cfg.expand.candidates,
        ),
        mcts=dataclasses.replace(search_cfg.mcts, rollouts=args.rollouts),
    )
    summary = search_problems(
        pool, work / "search", search_cfg, on_batch=lambda b: print(f"  searched {b.problems} more", flush=True)
    )
    trees = read_trees(work / "search" / "trees.jsonl")
    seconds["search"] = time.perf_counter() - t0
    print(f"search: {summary.problems} problems, {summary.solved} solved, {summary.nodes} nodes")

    # 2. data
    splits = {"bootstrap": stage_data(work / "data", trees, config, args.seed)}

    # 3. policy (as round 1)
    from rstar.ppm.model import PPMScorer
    from rstar.train.policy import train_policy
    from rstar.train.ppm import train_ppm

    t0 = time.perf_counter()
    policy = work / "policy"
    if not (policy / "metrics.json").exists():
        train_policy(work / "data" / "sft-train.jsonl", policy, config.policy_train)
    seconds["policy"] = time.perf_counter() - t0

    # 3b. more pairs: further problems searched by the SFT policy, as round 2 does
    # (its SFT prompt, float32, the later rounds' errors threshold); split the same way.
    searches = {"bootstrap": {"searcher": searcher, **_counts(summary)}}
    if args.tuned_pool_size:
        t0 = time.perf_counter()
        more = load_problems(ev.pool, args.pool_size + args.tuned_pool_size)[args.pool_size :]
        tuned_cfg = with_policy(config, str(policy.resolve()), True)
        tuned_cfg = dataclasses.replace(
            tuned_cfg,
            expand=dataclasses.replace(tuned_cfg.expand, candidates=args.candidates or tuned_cfg.expand.candidates),
            mcts=dataclasses.replace(tuned_cfg.mcts, rollouts=args.rollouts),
        )
        tuned_summary = search_problems(
            more,
            work / "search-tuned",
            tuned_cfg,
            on_batch=lambda b: print(f"  searched {b.problems} more (SFT policy)", flush=True),
        )
        splits["tuned"] = stage_data(
            work / "data-tuned", read_trees(work / "search-tuned" / "trees.jsonl"), config, args.seed
        )
        searches["tuned"] = {
            "searcher": "policy",
            **_counts(tuned_summary),
        }
        seconds["search_tuned"] = time.perf_counter() - t0
    folders = [work / "data"] + ([work / "data-tuned"] if args.tuned_pool_size else [])
    train_pairs = [p for d in folders for p in read_jsonl(d / "pairs-train.jsonl")]
    held_pairs = [p for d in folders for p in read_jsonl(d / "pairs-held.jsonl")]
    counts = {name: s["counts"] for name, s in splits.items()}
    print(f"pairs: {len(train_pairs)} train, {len(held_pairs)} held out; counts {counts}")

    # 4. the PPMs of the learning curve
    base = str(policy.resolve()) if args.ppm_base == "policy" else args.ppm_base
    ppm_cfg = dataclasses.replace(
        config.ppm_train,
        base=base,
        bf16=args.ppm_bf16 or config.ppm_train.bf16,
        **({"epochs": args.ppm_epochs} if args.ppm_epochs else {}),
    )
    # the tag names what a PPM was trained on, so a run with more pairs trains afresh
    tag = f"{'policy' if args.ppm_base == 'policy' else Path(base).name}-e{ppm_cfg.epochs:g}-p{len(train_pairs)}"
    tag += "-bf16" if ppm_cfg.bf16 else ""
    curve = []
    t0 = time.perf_counter()
    for size in args.curve:
        folder = work / f"ppm-{tag}-{size or 'all'}"
        chosen = subsample(train_pairs, size, args.seed)
        if not (folder / "metrics.json").exists():
            jsonl(folder.with_suffix(".pairs.jsonl"), chosen)
            train_ppm(folder.with_suffix(".pairs.jsonl"), folder, ppm_cfg)
        scorer = PPMScorer(str(folder), scale=config.ppm.scale)
        curve.append({"pairs": len(chosen), "folder": str(folder), **pair_accuracy(scorer, held_pairs)})
        print(f"PPM on {len(chosen)} pairs: held-out step pairs {curve[-1]['step']}, answers {curve[-1]['answer']}")
    seconds["ppm"] = time.perf_counter() - t0

    # 5. held-out problems: samples, votes, greedy, guided search
    t0 = time.perf_counter()
    heldout = load_problems(ev.heldout, args.heldout_size)
    rows = stage_samples(work, heldout, config, str(policy.resolve()), args.n)
    ks = sorted({min(2**i, args.n) for i in range(args.n.bit_length() + 1)})
    for point in curve:
        scorer = PPMScorer(point["folder"], scale=config.ppm.scale)
        texts = [s["text"] for r in rows for s in r["samples"]]
        flat = iter(scorer.score(texts))
        scores = [[next(flat) for _ in r["samples"]] for r in rows]
        point["votes"] = vote_curves(rows, scores, ks)
    seconds["samples"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tuned = with_policy(config, str(policy.resolve()), True)
    best = curve[-1]["folder"]
    guided_set = heldout[: args.guided_size]
    results = {}
    kept = KeptEngine()  # one engine for the three evaluations
    try:
        modes = (("greedy", 1), ("beam", ev.eval_beam_width), ("mcts", 1)) if guided_set else ()
        for mode, n in modes:
            m = evaluate(
                guided_set if mode != "greedy" else heldout,
                mode,
                n,
                work / f"eval-{mode}-{tag}",
                tuned,
                ppm=None if mode == "greedy" else best,
                kept=kept,
            )
            results[mode] = {
                "problems": m.problems,
                "accuracy": m.accuracy,
                "se": se(m.accuracy, m.problems),
            }
    finally:
        kept.close()
    if guided_set:
        greedy_subset = sum(
            r["correct"]
            for r in read_jsonl(work / f"eval-greedy-{tag}" / "answers.jsonl")
            if r["id"] in {p.id for p in guided_set}
        ) / len(guided_set)
        results["greedy_on_guided_subset"] = {
            "problems": len(guided_set),
            "accuracy": greedy_subset,
            "se": se(greedy_subset, len(guided_set)),
        }
    seconds["guided"] = time.perf_counter() - t0

    print(
        f"\n| PPM train pairs | held-out step-pair acc. | held-out answer-pair acc. | maj@{ks[-1]} "
        f"| best-of-{ks[-1]} | weighted@{ks[-1]} |\n|---|---|---|---|---|---|"
    )
    for p in curve:
        v = p["votes"]
        cell = [pct(v[key][-1]["accuracy"], len(rows)) for key in ("majority", "best_of_n", "weighted")]
        step = pct(p["step"]["accuracy"], p["step"]["n"]) if p["step"]["n"] else "–"
        ans = pct(p["answer"]["accuracy"], p["answer"]["n"]) if p["answer"]["n"] else "–"
        print(f"| {p['pairs']} | {step} | {ans} | " + " | ".join(cell) + " |")
    print("\n| N | " + " | ".join(str(k) for k in ks) + " |\n|---|" + "---|" * len(ks))
    v = curve[-1]["votes"]
    for key in ("majority", "best_of_n", "weighted"):
        print(f"| {key} | " + " | ".join(f"{x['accuracy']:.1%} ± {x['se']:.1%}" for x in v[key]) + " |")
    print("\n| search | problems | accuracy |\n|---|---|---|")
    for mode, r in results.items():
        print(f"| {mode} | {r['problems']} | {pct(r['accuracy'], r['problems'])} |")

    def local(path: str) -> str:  # no machine's absolute paths in the results
        return os.path.relpath(path) if os.path.isabs(path) else path

    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "args": {**vars(args), "out": local(args.out)},
        "synthesis": searches,
        "pairs": {
            "train": len(train_pairs),
            "held": len(held_pairs),
            "train_step": sum(p["kind"] == "step" for p in train_pairs),
            "held_step": sum(p["kind"] == "step" for p in held_pairs),
            "counts": counts,
        },
        "ppm_base": local(base),
        "ppm_epochs": ppm_cfg.epochs,
        "curve": curve,
        "searches": results,
        "heldout_samples": {"problems": len(rows), "n": args.n},
        "seconds": seconds,
    }
    save_report(report, args.out)
    return report


if __name__ == "__main__":
    main()
