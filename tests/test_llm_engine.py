"""The transformers engine on a tiny random model built offline."""

import math

import pytest
import torch

from rstar.llm.types import EOS, LENGTH, Completion, cut_at_stop

PROMPTS = ["x = 2 * 20", "Question: Tom has 3 apples and buys", "<code>\n# Step 1:"]


def test_n_completions_per_prompt_with_counts(tiny_engine):
    out = tiny_engine.generate(PROMPTS, n=3, max_tokens=8, temperature=1.0, seed=0)
    assert [len(r) for r in out] == [3, 3, 3]
    for r in out:
        for c in r:
            assert isinstance(c, Completion) and 1 <= c.num_tokens <= 8
            assert c.stop_reason in (LENGTH, EOS)
    assert len({c.text for c in out[0]}) > 1  # sampled, not copies


def test_max_tokens_gives_length(tiny_engine):
    # Greedy on this prompt never emits EOS with the seeded tiny model.
    ((c,),) = tiny_engine.generate(["x = 2 * 20"], max_tokens=5)
    assert (c.stop_reason, c.num_tokens) == (LENGTH, 5)
    assert len(tiny_engine.tokenizer(c.text, add_special_tokens=False)["input_ids"]) == 5


def test_seeds_reproduce(tiny_engine):
    a = tiny_engine.generate(PROMPTS, n=2, max_tokens=10, temperature=0.9, top_p=0.9, seed=7)
    b = tiny_engine.generate(PROMPTS, n=2, max_tokens=10, temperature=0.9, top_p=0.9, seed=7)
    c = tiny_engine.generate(PROMPTS, n=2, max_tokens=10, temperature=0.9, top_p=0.9, seed=8)
    assert a == b
    assert a != c


def test_a_request_alone_equals_it_in_a_batch(tiny_engine):
    batch = tiny_engine.generate(PROMPTS, n=2, max_tokens=10, temperature=0.9, seed=3)
    alone = tiny_engine.generate([PROMPTS[1]], n=2, max_tokens=10, temperature=0.9, seed=3)
    assert [c.text for c in alone[0]] == [c.text for c in batch[1]]


def test_one_seed_per_prompt(tiny_engine):
    kwargs = dict(n=2, max_tokens=10, temperature=0.9)
    both = tiny_engine.generate(PROMPTS[:2], seed=[4, 9], **kwargs)
    first = tiny_engine.generate(PROMPTS[:1], seed=4, **kwargs)
    second = tiny_engine.generate(PROMPTS[1:2], seed=9, **kwargs)
    assert [[c.text for c in r] for r in both] == [[c.text for c in r] for r in first + second]
    with pytest.raises(ValueError, match="one int per prompt"):
        tiny_engine.generate(PROMPTS[:2], seed=[1], **kwargs)


def test_batch_of_different_lengths_equals_one_by_one_greedy(tiny_engine):
    batch = tiny_engine.generate(PROMPTS, max_tokens=16)
    single = [tiny_engine.generate([p], max_tokens=16)[0] for p in PROMPTS]
    assert [r[0].text for r in batch] == [r[0].text for r in single]
    for b, s in zip(batch, single):
        assert math.isclose(b[0].logprob, s[0].logprob, rel_tol=1e-4, abs_tol=1e-3)


def test_stop_string_split_across_tokens(tiny_engine):
    ((free,),) = tiny_engine.generate([PROMPTS[0]], max_tokens=24)
    ids = tiny_engine.tokenizer(free.text, add_special_tokens=False)["input_ids"]
    # A stop string made of the end of one token and the start of the next.
    first = tiny_engine.tokenizer.decode(ids[:3])
    second = tiny_engine.tokenizer.decode(ids[:4])
    stop = first[-1] + second[len(first)]
    expected = cut_at_stop(free.text, [stop])
    assert expected is not None
    ((c,),) = tiny_engine.generate([PROMPTS[0]], stop=[stop], max_tokens=24)
    assert (c.text, c.stop_reason) == expected
    assert stop not in c.text


def test_logprob_matches_a_forward_pass(tiny_engine):
    tok, model = tiny_engine.tokenizer, tiny_engine.model
    ((g,),) = tiny_engine.generate([PROMPTS[2]], max_tokens=10)
    prompt_ids = tok(PROMPTS[2])["input_ids"]
    gen_ids = tok(g.text, add_special_tokens=False)["input_ids"]
    assert len(gen_ids) == g.num_tokens  # the greedy text round-trips here
    ids = torch.tensor([prompt_ids + gen_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
    picked = logp[torch.arange(len(prompt_ids) - 1, ids.shape[1] - 1), ids[0, len(prompt_ids) :]]
    assert math.isclose(float(picked.sum()), g.logprob, rel_tol=1e-4, abs_tol=1e-3)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(prompts=[]), "empty"),
        (dict(prompts="x"), "sequence"),
        (dict(prompts=[""]), "non-empty"),
        (dict(prompts=["x"], n=0), "n and max_tokens"),
        (dict(prompts=["x"], stop="<end>"), "stop"),
        (dict(prompts=["x"], top_p=0), "top_p"),
    ],
)
def test_bad_requests(tiny_engine, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        tiny_engine.generate(**kwargs)


def test_int8_dynamic_quantization(tiny_model_dir, tiny_engine):
    from rstar.llm.hf import HFEngine, HFEngineConfig

    engine = HFEngine(HFEngineConfig(model=str(tiny_model_dir), int8=True, threads=1))
    assert any("quantized" in type(m).__module__ for m in engine.model.modules())
    out = engine.generate(PROMPTS, n=2, max_tokens=6, temperature=0.7, seed=1)
    assert [len(r) for r in out] == [2, 2, 2]
    assert all(c.logprob < 0 and 1 <= c.num_tokens <= 6 for r in out for c in r)


def test_shared_prompt_prefix_is_prefilled_once_with_the_same_results(tiny_model_dir, tiny_engine):
    from rstar.llm.hf import MIN_SHARED_TOKENS, HFEngine, HFEngineConfig

    plain = HFEngine(HFEngineConfig(model=str(tiny_model_dir), threads=1, share_prefix=False))
    shared = HFEngine(HFEngineConfig(model=str(tiny_model_dir), threads=1))
    instruction = "Solve the problem one step at a time with code. " * 4
    prompts = [instruction + q for q in ("x = 2 * 20", "Question: Tom has 3 apples and buys", "y = 7")]
    kwargs = dict(n=2, max_tokens=10, temperature=0.9, seed=5)
    _assert_same(shared.generate(prompts, **kwargs), plain.generate(prompts, **kwargs))
    ids, _ = shared._prefix
    assert len(ids) >= MIN_SHARED_TOKENS and plain._prefix is None
    # Later calls reuse the kept prefix (a lone prompt too), and give what a full prefill gives.
    later = [instruction + "z = 1 + 1", instruction + "<code>\n# Step 1:"]
    for batch in (later, later[:1]):
        _assert_same(shared.generate(batch, max_tokens=12), plain.generate(batch, max_tokens=12))
        assert shared._prefix[0] is ids
    # Prompts that do not start with it get a full prefill (and no new prefix if they share little).
    _assert_same(shared.generate(PROMPTS, max_tokens=8), plain.generate(PROMPTS, max_tokens=8))
    assert shared._prefix[0] is ids


def _assert_same(results, reference):
    """Same texts and stop reasons; log-probabilities equal up to float rounding."""
    assert [[(c.text, c.stop_reason, c.num_tokens) for c in r] for r in results] == [
        [(c.text, c.stop_reason, c.num_tokens) for c in r] for r in reference
    ]
    for a, b in zip(sum(results, []), sum(reference, [])):
        assert math.isclose(a.logprob, b.logprob, rel_tol=1e-4, abs_tol=1e-3)
