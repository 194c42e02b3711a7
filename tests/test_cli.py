"""`rstar search` and `rstar eval` end to end: the tiny model trained offline,
the real sandbox, trees on disk, resume, bad input."""

import importlib.util
import json

import pytest
from typer.testing import CliRunner

from rstar.cli import app
from rstar.runs.store import read_trees
from rstar.search.expand import program_steps
from rstar.search.tree import ANSWERED, FAILED_ENDS
from rstar.steps import FINAL_CODE, STEP

runner = CliRunner()


def problems_file(path, pairs):
    with open(path, "w") as f:
        for i, (a, b) in enumerate(pairs):
            f.write(json.dumps({"id": f"t{i}", "question": f"What is {a} and {b}?", "answer": str(a * b)}) + "\n")
    return path


PAIRS = [(7, 9), (12, 5), (6, 8), (3, 11), (4, 4)]


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    work = tmp_path_factory.mktemp("search")
    problems = problems_file(work / "p.jsonl", PAIRS[:3])
    out = work / "out"
    result = runner.invoke(
        app, ["search", "--problems", str(problems), "--out", str(out), "--preset", "tiny", "mcts.rollouts=6"]
    )
    assert result.exit_code == 0, result.output
    return work, out


def test_tree_invariants(searched, sb):
    _, out = searched
    trees = read_trees(out / "trees.jsonl")
    assert [t.problem_id for t in trees] == ["t0", "t1", "t2"]
    code_nodes = []
    for t in trees:
        answers_below = {}
        for node in reversed(t.nodes):  # every answer backed up once, through all its ancestors
            own = [node] if node.end == ANSWERED else []
            below = own + [a for c in node.children for a in answers_below[c]]
            answers_below[node.id] = below
            if node.end in FAILED_ENDS:
                assert (node.q, node.n, node.reward) == (-1.0, 1, -1.0) and not node.children
            elif node.end != ANSWERED:
                assert node.n == len(below) and node.q == pytest.approx(sum(a.reward for a in below))
            else:
                assert node.reward in (1.0, -1.0) and node.n == 1 and node.correct == (node.reward == 1.0)
        code_nodes += [(t, n) for n in t.nodes if n.step and n.step.kind in (STEP, FINAL_CODE)]
    assert code_nodes, "the tiny model wrote no code step"
    rerun = sb.run_batch([program_steps(t, n) for t, n in code_nodes])
    assert [r.status.value for r in rerun] == [n.status for _, n in code_nodes]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["problems"] == 3 and summary["nodes"] == sum(len(t.nodes) - 1 for t in trees)


def test_resume_searches_only_new_problems(searched):
    work, out = searched
    before = (out / "trees.jsonl").read_bytes()
    problems = problems_file(work / "p5.jsonl", PAIRS)
    result = runner.invoke(
        app, ["search", "--problems", str(problems), "--out", str(out), "--preset", "tiny", "mcts.rollouts=6"]
    )
    assert result.exit_code == 0, result.output
    after = (out / "trees.jsonl").read_bytes()
    assert after.startswith(before)  # finished trees untouched
    assert [t.problem_id for t in read_trees(out / "trees.jsonl")] == ["t0", "t1", "t2", "t3", "t4"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["this_run"]["searched"] == 2


def test_a_torn_last_line_is_searched_again(tmp_path):
    problems = problems_file(tmp_path / "p.jsonl", PAIRS[:2])
    out = tmp_path / "out"
    args = [
        "search",
        "--problems",
        str(problems),
        "--out",
        str(out),
        "--preset",
        "tiny",
        "mcts.rollouts=2",
        "batch_problems=1",
    ]
    assert runner.invoke(app, args).exit_code == 0
    path = out / "trees.jsonl"
    first, second = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(first + second[: len(second) // 2])  # killed mid-write
    assert runner.invoke(app, args).exit_code == 0
    lines = path.read_bytes().splitlines(keepends=True)
    assert lines[0] == first and len(lines) == 2 and json.loads(lines[1])["id"] == "t1"


def test_a_tree_depends_on_its_problem_not_its_batch(searched, tmp_path):
    """Sampling seeds follow (problem, node), not the engine call: problems
    searched in other batches, or resumed after a partial run, grow the same
    trees as in one uninterrupted run."""
    work, out = searched
    reference = {json.loads(line)["id"]: line for line in (out / "trees.jsonl").read_text().splitlines()}
    problems = problems_file(work / "p5.jsonl", PAIRS)
    args = ["search", "--out", str(tmp_path / "o"), "--preset", "tiny", "mcts.rollouts=6", "batch_problems=2"]
    rows = problems.read_text().splitlines(keepends=True)
    partial = tmp_path / "first.jsonl"
    partial.write_text(rows[4] + rows[1])  # another order, another batch
    assert runner.invoke(app, [*args, "--problems", str(partial)]).exit_code == 0
    assert runner.invoke(app, [*args, "--problems", str(problems)]).exit_code == 0  # resumed with the rest
    lines = (tmp_path / "o" / "trees.jsonl").read_text().splitlines()
    mine = {json.loads(line)["id"]: line for line in lines}
    assert len(lines) == 5 and set(mine) == {f"t{i}" for i in range(5)}
    for pid in reference:
        assert mine[pid] == reference[pid], pid


@pytest.mark.parametrize(
    "content,message",
    [
        ('{"id": 1, "question": "ok", "answer": "2"}\nnot json\n', ":2: not JSON"),
        ('{"id": 1, "answer": "2"}\n', "non-empty 'question'"),
        ('{"id": 1, "question": "a"}\n{"id": 1, "question": "b"}\n', "duplicate id"),
        ("", "no problems"),
    ],
)
def test_malformed_problem_files(tmp_path, content, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    out = tmp_path / "out"
    result = runner.invoke(app, ["search", "--problems", str(bad), "--out", str(out), "--preset", "tiny"])
    assert result.exit_code == 2 and message in result.output
    assert not out.exists()  # nothing written half-way


@pytest.mark.parametrize(
    "args,message",
    [
        (["--preset", "nope"], "unknown preset"),
        (["--preset", "tiny", "--policy", "no-such-model"], "unknown model"),
        (["--preset", "tiny", "mcts.bogus=1"], "unknown config key"),
    ],
)
def test_bad_options(tmp_path, args, message):
    problems = problems_file(tmp_path / "p.jsonl", PAIRS[:1])
    out = tmp_path / "out"
    result = runner.invoke(app, ["search", "--problems", str(problems), "--out", str(out), *args])
    assert result.exit_code == 2 and message in result.output
    assert not out.exists()


def test_folder_of_another_config_is_refused(searched):
    work, out = searched
    result = runner.invoke(
        app, ["search", "--problems", str(work / "p.jsonl"), "--out", str(out), "--preset", "tiny", "mcts.rollouts=9"]
    )
    assert result.exit_code == 2 and "another config" in result.output


def test_a_folder_from_before_a_setting_existed_continues_at_its_default(searched, tmp_path):
    import shutil

    work, out = searched
    older = tmp_path / "older"
    shutil.copytree(out, older)
    recorded = json.loads((older / "config.json").read_text())
    del recorded["launch"]  # settings a later version added
    del recorded["engine"]["tensor_parallel_size"]
    (older / "config.json").write_text(json.dumps(recorded))
    args = ["search", "--problems", str(work / "p.jsonl"), "--out", str(older), "--preset", "tiny", "mcts.rollouts=6"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads((older / "config.json").read_text()) == recorded  # the record is left as it was
    # ... but not when this run sets one of them to something else
    result = runner.invoke(app, [*args, "launch.processes=2"])
    assert result.exit_code == 2 and "another config" in result.output


def test_eval_greedy_with_the_default_model(tmp_path):
    out = tmp_path / "eval"
    result = runner.invoke(
        app,
        [
            "eval",
            "--dataset",
            "gsm8k",
            "--limit",
            "3",
            "--mode",
            "greedy",
            "--out",
            str(out),
            "expand.max_depth=4",
            "expand.max_step_tokens=64",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    rows = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    assert metrics["problems"] == 3 and len(rows) == 3
    assert metrics["correct"] == sum(r["correct"] for r in rows)
    assert [r["id"] for r in rows] == ["gsm8k_test-0", "gsm8k_test-1", "gsm8k_test-2"]


@pytest.fixture(scope="module")
def tiny_ppm(tmp_path_factory):
    """A PPM started from the tiny policy: its backbone, a fresh scalar head."""
    from rstar.ppm.model import init_ppm

    return init_ppm("tiny", tmp_path_factory.mktemp("ppm") / "ppm")


def test_ppm_augmented_search(tmp_path, tiny_ppm):
    problems = problems_file(tmp_path / "p.jsonl", PAIRS[:2])
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "search",
            "--problems",
            str(problems),
            "--out",
            str(out),
            "--preset",
            "tiny",
            "--ppm",
            str(tiny_ppm),
            "mcts.rollouts=4",
        ],
    )
    assert result.exit_code == 0, result.output
    for t in read_trees(out / "trees.jsonl"):
        scored = [n for n in t.nodes if n.step is not None]
        assert scored and all(n.ppm is not None and -1 <= n.ppm <= 1 for n in scored)
        # the ground truth decides answers; the PPM's score is a new node's first visit
        assert all(n.reward in (1.0, -1.0) for n in t.nodes if n.terminal and n.end != "exhausted")
        assert all((n.q, n.n) == (n.ppm, 1) for n in scored if not n.terminal and not n.children)


@pytest.mark.parametrize("mode", ["bon", "beam", "mcts"])
def test_eval_modes_with_a_ppm(tmp_path, tiny_ppm, mode):
    problems = problems_file(tmp_path / "p.jsonl", PAIRS[:2])
    out = tmp_path / mode
    result = runner.invoke(
        app,
        [
            "eval",
            "--dataset",
            str(problems),
            "--mode",
            mode,
            "--n",
            "2",
            "--ppm",
            str(tiny_ppm),
            "--preset",
            "tiny",
            "--out",
            str(out),
            "mcts.rollouts=3",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mode"] == mode and metrics["problems"] == 2
    assert 0 <= metrics["accuracy"] <= metrics["pass_at_n"] <= 1


def test_ppm_modes_need_a_ppm(tmp_path):
    problems = problems_file(tmp_path / "p.jsonl", PAIRS[:1])
    result = runner.invoke(
        app, ["eval", "--dataset", str(problems), "--mode", "bon", "--preset", "tiny", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "needs a PPM" in result.output
    result = runner.invoke(
        app,
        [
            "search",
            "--problems",
            str(problems),
            "--preset",
            "tiny",
            "--ppm",
            str(tmp_path),
            "--out",
            str(tmp_path / "o2"),
        ],
    )
    assert result.exit_code == 2 and "not a PPM folder" in result.output
    assert not (tmp_path / "o").exists() and not (tmp_path / "o2").exists()


def test_extract_from_searched_trees(searched, tmp_path):
    _, out = searched
    for kind in ("sft", "ppm"):
        target = tmp_path / f"{kind}.jsonl"
        result = runner.invoke(app, ["extract", kind, "--trees", str(out / "trees.jsonl"), "--out", str(target)])
        assert result.exit_code == 0, result.output
        rows = [json.loads(line) for line in target.read_text().splitlines()]
        keys = {"prompt", "response"} if kind == "sft" else {"prefix", "positive", "negative"}
        assert all(keys <= set(r) for r in rows)
    result = runner.invoke(
        app, ["extract", "nope", "--trees", str(out / "trees.jsonl"), "--out", str(tmp_path / "x.jsonl")]
    )
    assert result.exit_code == 2


def test_a_fine_tuned_policy_is_prompted_as_it_was_trained(tmp_path):
    """`--policy DIR` takes the prompt style recorded in DIR (the SFT prompt for
    policies we fine-tune), unless expand.prompt_style is given."""
    import shutil

    from rstar.cli import _config
    from rstar.llm.models import resolve_model
    from rstar.prompts import record_prompt_style

    policy = tmp_path / "policy"
    shutil.copytree(resolve_model("tiny"), policy)
    record_prompt_style(policy, "sft")
    assert _config("cpu-demo", [], None).expand.prompt_style == "chat"
    assert _config("cpu-demo", [], str(policy)).expand.prompt_style == "sft"
    assert _config("cpu-demo", ["expand.prompt_style=plain"], str(policy)).expand.prompt_style == "plain"
    # As evolve runs it: no int8 (it erased what LoRA taught), the tuned engine; explicit settings win.
    vllm = "vllm" if importlib.util.find_spec("vllm") else "hf"
    tuned = _config("cpu-demo", [], str(policy)).engine
    assert (tuned.int8, tuned.kind, tuned.model) == (False, vllm, str(policy))
    given = _config("cpu-demo", ["engine.int8=true", "engine.kind=hf"], str(policy)).engine
    assert (given.int8, given.kind) == (True, "hf")
    assert _config("cpu-demo", [], None).engine.int8 is True
    record_prompt_style(policy, "plain")  # end to end: the search records what it used
    problems = problems_file(tmp_path / "p.jsonl", PAIRS[:1])
    result = runner.invoke(
        app,
        [
            "search",
            "--problems",
            str(problems),
            "--out",
            str(tmp_path / "out"),
            "--preset",
            "tiny",
            "--policy",
            str(policy),
            "mcts.rollouts=1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "config.json").read_text())["expand"]["prompt_style"] == "plain"


def test_eval_mcts_runs_and_votes(tmp_path, tiny_ppm):
    problems = problems_file(tmp_path / "p.jsonl", PAIRS[:2])
    out = tmp_path / "mcts"
    result = runner.invoke(
        app,
        [
            "eval",
            "--dataset",
            str(problems),
            "--mode",
            "mcts",
            "--runs",
            "3",
            "--top-k",
            "2",
            "--ppm",
            str(tiny_ppm),
            "--preset",
            "tiny",
            "--out",
            str(out),
            "mcts.rollouts=2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "3 runs x 2 rollouts, top-2 vote" in result.output
    rows = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    for row in rows:
        assert len(row["runs"]) <= 3 and all(r["value"] is not None for r in row["runs"])
        best = sorted(row["runs"], key=lambda r: -r["value"])[:2]
        assert row["answer"] in ({r["answer"] for r in best} or {None})
    assert json.loads((out / "metrics.json").read_text())["n"] == 3
