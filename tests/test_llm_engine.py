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
    (c,), = tiny_engine.generate(["x ="], max_tokens=5)
    if c.stop_reason == LENGTH:
        assert c.num_tokens == 5


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


def test_batch_of_different_lengths_equals_one_by_one_greedy(tiny_engine):
    batch = tiny_engine.generate(PROMPTS, max_tokens=16)
    single = [tiny_engine.generate([p], max_tokens=16)[0] for p in PROMPTS]
    assert [r[0].text for r in batch] == [r[0].text for r in single]
    for b, s in zip(batch, single):
        assert math.isclose(b[0].logprob, s[0].logprob, rel_tol=1e-4, abs_tol=1e-3)


def test_stop_string_split_across_tokens(tiny_engine):
    (free,), = tiny_engine.generate([PROMPTS[0]], max_tokens=24)
    ids = tiny_engine.tokenizer(free.text, add_special_tokens=False)["input_ids"]
    # A stop string made of the end of one token and the start of the next.
    first = tiny_engine.tokenizer.decode(ids[:3])
    second = tiny_engine.tokenizer.decode(ids[:4])
    stop = first[-1] + second[len(first)]
    expected = cut_at_stop(free.text, [stop])
    assert expected is not None
    (c,), = tiny_engine.generate([PROMPTS[0]], stop=[stop], max_tokens=24)
    assert (c.text, c.stop_reason) == expected
    assert stop not in c.text


def test_logprob_matches_a_forward_pass(tiny_engine):
    (c,), = tiny_engine.generate([PROMPTS[2]], max_tokens=10, temperature=0.8, seed=5)
    tok, model = tiny_engine.tokenizer, tiny_engine.model
    prompt_ids = tok(PROMPTS[2])["input_ids"]
    # Re-tokenizing text may differ from the sampled ids: recompute from the text
    # only when it round-trips; otherwise compare on the greedy continuation.
    (g,), = tiny_engine.generate([PROMPTS[2]], max_tokens=10)
    gen_ids = tok(g.text, add_special_tokens=False)["input_ids"]
    if len(gen_ids) != g.num_tokens:
        pytest.skip("greedy text does not round-trip through the tokenizer")
    ids = torch.tensor([prompt_ids + gen_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
    picked = logp[torch.arange(len(prompt_ids) - 1, ids.shape[1] - 1), ids[0, len(prompt_ids):]]
    assert math.isclose(float(picked.sum()), g.logprob, rel_tol=1e-4, abs_tol=1e-3)
    assert c.logprob < 0


@pytest.mark.parametrize("kwargs,match", [
    (dict(prompts=[]), "empty"),
    (dict(prompts="x"), "sequence"),
    (dict(prompts=[""]), "non-empty"),
    (dict(prompts=["x"], n=0), "n and max_tokens"),
    (dict(prompts=["x"], stop="<end>"), "stop"),
    (dict(prompts=["x"], top_p=0), "top_p"),
])
def test_bad_requests(tiny_engine, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        tiny_engine.generate(**kwargs)
