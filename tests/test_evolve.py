"""`rstar evolve` with the tiny model, the real sandbox and real training:
end to end, killed in the middle and continued, bad input; and the metrics'
arithmetic on hand-made rows."""

import dataclasses
import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rstar.cli import app
from rstar.config import load_config, with_policy
from rstar.data import load_problems
from rstar.evolve import answer_pair_accuracy, sample_curves
from rstar.metrics import Curve, RoundMetrics
from rstar.runs.evaluate import evaluate
from rstar.runs.search import summarize
from rstar.runs.store import read_jsonl, read_trees
from rstar.runs.workers import KeptEngine
from rstar.train.ppm import split_by_problem

ROOT = Path(__file__).resolve().parent.parent


def evolve(workdir, *args):
    return CliRunner().invoke(app, ["evolve", "--preset", "tiny", "--workdir", str(workdir), *args])


def snapshot(folder: Path, skip=("report.md", "plots")) -> dict:
    """Every file's hash under `folder`."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and rel.parts[0] not in skip:
            out[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def evolved(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("evolve") / "run"
    result = evolve(workdir)
    assert result.exit_code == 0, result.output
    return workdir


def test_evolve_tiny_end_to_end(evolved):
    read = [json.loads((evolved / f"round-{k}" / "metrics.json").read_text()) for k in range(3)]
    rounds = [RoundMetrics.from_dict(m) for m in read]
    assert [m.round for m in rounds] == [0, 1, 2]
    for m in rounds[1:]:
        trees = read_trees(evolved / f"round-{m.round}" / "search" / "trees.jsonl")
        assert len(trees) == 12 and m.search == summarize(trees)
        assert m.solved_ids == sorted(t.problem_id for t in trees if t.solved)
        assert m.q_values and sum(m.q_values.counts) == sum(1 for t in trees for n in t.nodes if n.step and n.n)
    # The tiny model solves some toy problems: round 1 trains a policy and a PPM,
    # and round 2 searches with both.
    first = rounds[1]
    assert first.sft_examples > 0 and first.policy_train and first.policy_train.steps > 0
    assert first.ppm_train and first.ppm_train.steps > 0 and 0 <= first.ppm_train.eval_pairwise_accuracy <= 1
    spec = json.loads((evolved / "round-2" / "config.json").read_text())
    assert spec["search_model"] == first.policy == str((evolved / "round-1" / "policy").resolve())
    assert spec["ppm"] == first.ppm and spec["search"]["expand"]["prompt_style"] == "sft"
    # round 1 is terminal-guided with the bootstrap's code-error threshold; later rounds use 1
    spec1 = json.loads((evolved / "round-1" / "config.json").read_text())
    assert spec1["ppm"] is None and spec1["search"]["expand"]["errors_threshold"] == 2
    assert spec["search"]["expand"]["errors_threshold"] == 1
    # every rule of the pair extraction is counted; the kept ones are the pairs written
    assert first.pair_counts and first.pair_counts["kept"] + first.pair_counts.get("answer_kept", 0) >= first.ppm_pairs
    # each round with a PPM is also evaluated with PPM-guided search, and on the second held-out set
    for m in rounds:
        assert m.eval.extra and m.eval.extra.problems == 4 and m.eval.extra.set == "toy_test"
        guided = m.eval.guided
        assert (guided is None) == (m.ppm is None)
        if guided:
            assert guided.mode == "mcts" and 0 <= guided.accuracy <= guided.pass_at_n <= 1
    # Round 1 has its own rollout count; then problems no earlier round solved get more.
    first_trees = (evolved / "round-1" / "search" / "trees.jsonl").read_text().splitlines()
    assert {json.loads(line)["config"]["mcts"]["rollouts"] for line in first_trees} == {4}
    unsolved = {t.problem_id for t in read_trees(evolved / "round-1" / "search" / "trees.jsonl") if not t.solved}
    for line in (evolved / "round-2" / "search" / "trees.jsonl").read_text().splitlines():
        record = json.loads(line)
        assert record["config"]["mcts"]["rollouts"] == (6 if record["id"] in unsolved else 3)
    # The curves end where the evaluation's own numbers are.
    for m in rounds:
        e = m.eval
        assert e.problems == 8 and e.curve.k == [1, 2, 4]
        assert e.curve.majority[-1] == pytest.approx(e.majority.accuracy)
        if e.best_of_n is not None:
            assert e.curve.best_of_n and e.curve.best_of_n[-1] == pytest.approx(e.best_of_n.accuracy)
    assert rounds[0].eval.best_of_n is None  # no PPM before round 1
    report = (evolved / "report.md").read_text()
    assert "## Round 1" in report and "## Round 2" in report and "| 2 |" in report
    for name in ("accuracy", "best_of_n", "q_values", "ppm_accuracy"):
        assert f"plots/{name}.png" in report
        assert (evolved / "plots" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerun_of_a_finished_run_changes_nothing(evolved):
    before = snapshot(evolved)
    result = evolve(evolved)
    assert result.exit_code == 0, result.output
    assert snapshot(evolved) == before


def test_killed_mid_round_continues_without_searching_again(tmp_path):
    """kill -9 during the search, Ctrl-C during policy training, kill -9
    during PPM training, then the same command finishes: finished trees are
    untouched and not searched again, training resumes from its checkpoint,
    and the round ends exactly as an uninterrupted run of it does."""
    workdir = tmp_path / "run"

    def command(folder):
        return [
            sys.executable,
            "-m",
            "rstar.cli",
            "evolve",
            "--preset",
            "tiny",
            "--workdir",
            str(folder),
            "--rounds",
            "1",
            "evolve.pool_size=24",
            "batch_problems=2",
            "policy_train.epochs=40",
            "policy_train.save_steps=2",
            "ppm_train.epochs=40",
            "ppm_train.save_steps=2",
        ]

    args = command(workdir)
    trees = workdir / "round-1" / "search" / "trees.jsonl"

    def start():
        # SIGINT as a terminal sends it, even where the tests run with it
        # ignored (a background job of a non-interactive shell inherits that).
        return subprocess.Popen(
            args,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )

    def wait_for(condition, proc, limit=300):
        deadline = time.monotonic() + limit
        while not condition():
            assert proc.poll() is None, "evolve ended before it could be interrupted"
            assert time.monotonic() < deadline
            time.sleep(0.02)

    proc = start()
    wait_for(lambda: trees.exists() and trees.read_bytes().count(b"\n") >= 2, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    data = trees.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    finished = complete.count(b"\n")
    assert 2 <= finished < 24

    proc = start()
    checkpoints = workdir / "round-1" / "policy" / "checkpoints"
    wait_for(lambda: checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*/trainer_state.json")), proc)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) != 0
    assert not (workdir / "round-1" / "policy" / "metrics.json").exists()

    proc = start()
    checkpoints = workdir / "round-1" / "ppm" / "checkpoints"
    wait_for(lambda: checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*/trainer_state.json")), proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (workdir / "round-1" / "ppm" / "metrics.json").exists()

    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    after = trees.read_bytes()
    assert after.startswith(complete)
    ids = [json.loads(line)["id"] for line in after.splitlines()]
    assert len(ids) == len(set(ids)) == 24
    summary = json.loads((workdir / "round-1" / "search" / "summary.json").read_text())
    assert summary["this_run"]["searched"] == 0  # the second run finished the search
    policy = json.loads((workdir / "round-1" / "policy" / "metrics.json").read_text())
    assert policy["resumed"] is True
    assert json.loads((workdir / "round-1" / "metrics.json").read_text())["round"] == 1

    # the same round uninterrupted: the same trees, training data and held-out results
    again = tmp_path / "again"
    result = subprocess.run(command(again), cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = sorted((again / "round-1" / "search" / "trees.jsonl").read_bytes().splitlines())
    assert sorted(after.splitlines()) == lines
    for data in ("sft.jsonl", "ppm.jsonl"):
        assert (again / "round-1" / "data" / data).read_bytes() == (workdir / "round-1" / "data" / data).read_bytes()
    for folder in ("greedy", "sample"):
        answers = workdir / "round-1" / "eval" / folder / "answers.jsonl"
        assert sorted(read_jsonl(answers), key=str) == sorted(read_jsonl(again / answers.relative_to(workdir)), key=str)


def test_unknown_preset_and_foreign_or_damaged_workdirs(evolved, tmp_path):
    result = CliRunner().invoke(app, ["evolve", "--preset", "nope", "--workdir", str(tmp_path / "x")])
    assert result.exit_code == 2 and "unknown preset 'nope'" in result.output
    assert not (tmp_path / "x").exists()

    before = snapshot(evolved, skip=())
    result = CliRunner().invoke(app, ["evolve", "--preset", "workstation", "--workdir", str(evolved)])
    assert result.exit_code == 2 and "preset 'tiny'" in result.output
    result = evolve(evolved, "evolve.eval_n=2")
    assert result.exit_code == 2 and "evolve.eval_n: 4 -> 2" in result.output
    assert snapshot(evolved, skip=()) == before

    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    result = evolve(stranger)
    assert result.exit_code == 2 and "not empty" in result.output
    assert [p.name for p in stranger.iterdir()] == ["notes.txt"]


def test_damaged_round_folders_are_named_and_left_alone(evolved, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(evolved, copy)
    (copy / "round-1" / "metrics.json").write_text("{not json")
    before = snapshot(copy, skip=())
    result = evolve(copy)
    assert result.exit_code == 2 and "round-1/metrics.json is damaged" in result.output
    assert snapshot(copy, skip=()) == before
    # JSON, but not a round's metrics: named, with what is missing
    (copy / "round-1" / "metrics.json").write_text('{"round": 1, "policy": "x"}')
    result = evolve(copy)
    assert result.exit_code == 2 and "round-1/metrics.json is damaged (RoundMetrics:" in result.output
    assert "'tuned'" in result.output

    shutil.rmtree(copy)
    shutil.copytree(evolved, copy)
    (copy / "round-2" / "metrics.json").unlink()  # round 2 is to be continued ...
    trees = copy / "round-2" / "search" / "trees.jsonl"
    lines = trees.read_text().splitlines(keepends=True)
    trees.write_text(lines[0] + "garbage\n" + "".join(lines[2:]))  # ... from a damaged tree file
    before = snapshot(copy, skip=())
    result = evolve(copy)
    assert result.exit_code == 2 and "line 2" in result.output and "trees.jsonl" in result.output
    assert snapshot(copy, skip=()) == before


# -- the metrics' arithmetic ----------------------------------------------------


def sample(answer, correct, ppm=None):
    return {"answer": answer, "correct": correct, "ppm": ppm}


def test_curves_take_the_first_k_samples():
    rows = [
        # majority turns wrong at k=4; the PPM picks the right one throughout
        {
            "samples": [
                sample("3", True, 0.9),
                sample("5", False, 0.1),
                sample("5", False, 0.2),
                sample("5", False, 0.3),
            ]
        },
        # no answer in the first sample; majority right from k=2; PPM wrong at k=4
        {
            "samples": [
                sample(None, False, -0.5),
                sample("7", True, 0.0),
                sample("7", True, 0.0),
                sample("8", False, 0.5),
            ]
        },
    ]
    curve = sample_curves(rows, 4, with_ppm=True)
    assert curve == Curve(k=[1, 2, 4], majority=[0.5, 1.0, 0.5], best_of_n=[0.5, 1.0, 0.5])
    assert sample_curves(rows, 3, with_ppm=False) == Curve(k=[1, 2, 3], majority=[0.5, 1.0, 0.5], best_of_n=None)


def test_answer_pairs_compare_correct_with_wrong_answers_only():
    rows = [
        {"samples": [sample("3", True, 0.9), sample("5", False, 0.1), sample(None, False, 0.95)]},
        {"samples": [sample("7", True, 0.2), sample("8", False, 0.5), sample("9", False, 0.1)]},
        {"samples": [sample("1", True, 0.4)]},
    ]
    got = answer_pair_accuracy(rows)
    assert got.pairs == 3 and got.accuracy == pytest.approx(2 / 3)


def test_ppm_held_out_pairs_come_from_problems_never_trained_on():
    rows = [{"id": f"p{i // 5}", "chosen": str(i), "rejected": "x"} for i in range(50)]
    train, held = split_by_problem(rows, 0.2, seed=0)
    assert len(train) + len(held) == 50 and len(held) >= 10
    assert not {r["id"] for r in train} & {r["id"] for r in held}
    one = [{"id": "p", "chosen": str(i), "rejected": "x"} for i in range(10)]
    train, held = split_by_problem(one, 0.2, seed=0)
    assert len(held) == 2 and len(train) == 8


def test_kept_engine_serves_consecutive_stages_of_one_policy(tmp_path):
    cfg = load_config("tiny")
    problems = load_problems("toy_test", 3)
    alone = evaluate(problems, "greedy", 1, tmp_path / "alone", cfg)
    kept = KeptEngine()
    first = kept.context(cfg)
    shared = evaluate(problems, "greedy", 1, tmp_path / "kept", cfg, kept=kept)
    again = kept.context(cfg)
    assert again.engine is first.engine and again.sandbox is first.sandbox
    assert read_jsonl(tmp_path / "kept" / "answers.jsonl") == read_jsonl(tmp_path / "alone" / "answers.jsonl")
    assert shared.correct == alone.correct
    # Other engine settings: the kept engine is closed and a new one started.
    other = kept.context(dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, max_batch_rows=8)))
    assert other.engine is not first.engine and first.engine.model is None
    kept.close()
    assert other.engine.model is None
    kept.close()  # closing twice is harmless


def test_fine_tuned_policies_get_their_engine_and_prompt():
    cfg = load_config("cpu-demo")
    base, tuned = with_policy(cfg, "default", False), with_policy(cfg, "/some/policy", True)
    assert (base.engine.kind, base.engine.int8, base.expand.prompt_style) == ("hf", True, "chat")
    vllm = "vllm" if importlib.util.find_spec("vllm") else "hf"
    assert (tuned.engine.kind, tuned.engine.int8, tuned.expand.prompt_style) == (vllm, False, "sft")
    assert tuned.engine.model == "/some/policy"
    # Named engines are taken as they are; '' keeps engine.kind for every policy.
    for setting, kind in (("vllm", "vllm"), ("hf", "hf"), ("", "hf")):
        ev = dataclasses.replace(cfg.evolve, tuned_engine=setting)
        assert with_policy(dataclasses.replace(cfg, evolve=ev), "/p", True).engine.kind == kind
        assert with_policy(dataclasses.replace(cfg, evolve=ev), "default", False).engine.kind == "hf"
