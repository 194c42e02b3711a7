"""Training throughput of policy SFT and PPM training (tokens/s, peak memory).

    python bench/train_bench.py [--base default] [--examples 64]

Each recipe runs in a subprocess of its own (so peak RSS is its own) on
synthetic step-format data of realistic length. Our recipes are TRL's
SFTTrainer / RewardTrainer with peft LoRA, so "plain TRL" is the same code
path; on a GPU, run this with --base a 0.5B model and bf16=true.
Prints a table and writes bench/results/train.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
ROOT = os.path.dirname(HERE)
from report import save_report  # noqa: E402

STEP = "<code>\n# Step {k}: work out part {k} of the problem\nvalue_{k} = {a} * {b} + {k}\n<end_of_step>\n\n"


def solution(i: int, steps: int = 6) -> str:
    body = "".join(STEP.format(k=k, a=i + k, b=k + 3) for k in range(1, steps + 1))
    return (
        body + f"print(value_{steps})\n<end_of_code>\n<output>{i}<end_of_output>\n<answer>\\boxed{{{i}}}<end_of_answer>"
    )


def prompt(i: int) -> str:
    return f"<|user|>\nA shop sells {i} boxes of 12 pencils each and gets 7 back. How many are sold?\n<|assistant|>\n"


def run_one(kind: str, base: str, n: int, out: str) -> dict:
    sys.path.insert(0, ROOT)
    from transformers import AutoTokenizer

    from rstar.llm.models import resolve_model
    from rstar.train.policy import PolicyTrainConfig, train_policy
    from rstar.train.ppm import PPMTrainConfig, train_ppm

    tok = AutoTokenizer.from_pretrained(resolve_model(base))
    data = os.path.join(out, f"{kind}.jsonl")
    with open(data, "w") as f:
        for i in range(n):
            if kind == "policy":
                f.write(json.dumps({"prompt": prompt(i), "response": solution(i)}) + "\n")
            else:
                wrong = solution(i).replace("<end_of_step>", "oops = 1 / 0\n<end_of_step>", 1)
                f.write(json.dumps({"prefix": prompt(i), "positive": solution(i), "negative": wrong}) + "\n")
    if kind == "policy":
        tokens = sum(len(tok(prompt(i) + solution(i))["input_ids"]) + 1 for i in range(n))
        cfg = PolicyTrainConfig(base=base, epochs=1, batch_size=8, max_length=1024, save_steps=10_000)
        t = time.perf_counter()
        m = train_policy(data, os.path.join(out, "policy"), cfg, progress=False)
    else:
        # both sides of every pair go through the model
        tokens = sum(len(tok(prompt(i) + solution(i))["input_ids"]) * 2 + 2 for i in range(n))
        cfg = PPMTrainConfig(base=base, epochs=1, batch_size=8, max_length=1024, save_steps=10_000, eval_fraction=0.125)
        tokens = int(tokens * (1 - 0.125))
        t = time.perf_counter()
        m = train_ppm(data, os.path.join(out, "ppm"), cfg, progress=False)
    wall = time.perf_counter() - t  # includes loading, saving and (PPM) the held-out scoring
    return {
        "kind": kind,
        "examples": n,
        "tokens": tokens,
        "steps": m.steps,
        "wall_s": wall,
        "tokens_per_s": tokens / wall,
        "final_loss": m.losses[-1],
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="default")
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--one", choices=["policy", "ppm"], help=argparse.SUPPRESS)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "train.json"))
    args = parser.parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = "1"
    if args.one:
        with tempfile.TemporaryDirectory() as tmp:
            print("RESULT" + json.dumps(run_one(args.one, args.base, args.examples, tmp)))
        return {}
    rows = []
    for kind in ("policy", "ppm"):
        proc = subprocess.run(
            [sys.executable, __file__, "--one", kind, "--base", args.base, "--examples", str(args.examples)],
            capture_output=True,
            text=True,
        )
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT")]
        rows.append(json.loads(line[0][6:]) if line else {"kind": kind, "error": proc.stderr[-500:]})
    print(f"\n{args.base}, {args.examples} examples, 1 epoch, batch 8, LoRA r=16 (q,k,v,o)")
    print("| recipe | tokens | steps | wall s | tokens/s | peak RSS GiB | final loss |\n|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['kind']} | failed | | | | | |")
            continue
        print(
            f"| {r['kind']} | {r['tokens']} | {r['steps']} | {r['wall_s']:.1f} | {r['tokens_per_s']:.0f} "
            f"| {r['peak_rss_gib']:.2f} | {r['final_loss']:.4f} |"
        )
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "base": args.base,
        "rows": rows,
    }
    save_report(report, args.out)
    return report


if __name__ == "__main__":
    main()
