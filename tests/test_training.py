"""PPM and policy training on the tiny model: losses, what changes and what
does not, the label mask, save/load, resume, bad data."""

import dataclasses
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from rstar.llm.models import resolve_model
from rstar.ppm.model import PPMScorer, init_ppm
from rstar.train.common import DataFileError
from rstar.train.policy import PolicyTrainConfig, train_policy
from rstar.train.ppm import PPMTrainConfig, train_ppm

PPM_CFG = PPMTrainConfig(base="tiny", epochs=3, learning_rate=5e-3, batch_size=8, max_length=256, save_steps=5)
SFT_CFG = PolicyTrainConfig(base="tiny", epochs=2, learning_rate=3e-3, batch_size=4, max_length=256, save_steps=3)


def write_pairs(path, n=40, too_long=1):
    with open(path, "w") as f:
        for i in range(n):
            f.write(
                json.dumps(
                    {
                        "prefix": f"<|user|>\nWhat is {i} and 3?\n<|assistant|>\n",
                        "positive": f"<code>\nx = {i} * 3\n<end_of_step>",
                        "negative": f"<code>\nx = {i} / 0\n<end_of_step>",
                    }
                )
                + "\n"
            )
        for _ in range(too_long):
            f.write(json.dumps({"prefix": "p" * 5000, "positive": "a", "negative": "b"}) + "\n")
    return path


def write_sft(path, n=24):
    with open(path, "w") as f:
        for i in range(n):
            f.write(
                json.dumps(
                    {
                        "prompt": f"<|user|>\nWhat is {i} and 3?\n<|assistant|>\n",
                        "response": f"<code>\n# Step 1: compute\nx = {i} * 3\n<end_of_step>",
                    }
                )
                + "\n"
            )
    return path


@pytest.fixture(scope="module")
def trained_ppm(tmp_path_factory):
    work = tmp_path_factory.mktemp("ppm")
    metrics = train_ppm(write_pairs(work / "pairs.jsonl"), work / "ppm", PPM_CFG, progress=False)
    return work / "ppm", metrics


def test_ppm_loss_falls_and_long_pairs_are_counted(trained_ppm):
    _, m = trained_ppm
    assert all(math.isfinite(x) for x in m.losses)
    assert sum(m.losses[-3:]) / 3 < sum(m.losses[:3]) / 3
    assert m.skipped_too_long == 1 and m.train_pairs + m.eval_pairs == 40
    assert m.eval_pairwise_accuracy >= 0.75


def test_ppm_trained_what_it_should(trained_ppm, tmp_path):
    folder, _ = trained_ppm
    start = load_file(str(init_ppm("tiny", tmp_path / "start") / "model.safetensors"))
    end = load_file(str(folder / "model.safetensors"))
    changed = {k for k in start if not torch.equal(start[k], end[k])}
    assert "score.weight" in changed  # the head, trained in full
    lora_targets = {k for k in start if any(t in k for t in ("q_proj", "k_proj", "v_proj", "o_proj"))}
    assert lora_targets and lora_targets <= changed  # every LoRA target, merged
    assert not any("mlp" in k or "embed" in k or "norm" in k for k in changed)  # frozen


def test_ppm_trains_in_bfloat16_with_its_head_in_float32(tmp_path):
    """bf16 (2-4x faster on a CPU with AVX512-BF16): the
    backbone in bfloat16, the head and LoRA weights kept in float32 so that
    small steps do not round away."""
    config = dataclasses.replace(PPM_CFG, bf16=True, epochs=2)
    m = train_ppm(write_pairs(tmp_path / "pairs.jsonl"), tmp_path / "ppm", config, progress=False)
    assert all(math.isfinite(x) for x in m.losses) and sum(m.losses[-3:]) < sum(m.losses[:3])
    saved = load_file(str(tmp_path / "ppm" / "model.safetensors"))
    assert saved["score.weight"].dtype == torch.float32
    assert saved["model.layers.0.mlp.up_proj.weight"].dtype == torch.bfloat16
    assert len(PPMScorer(str(tmp_path / "ppm")).score(["x = 1 * 3<end_of_step>"])) == 1


def test_saved_ppm_scores_the_same_from_merged_and_adapter(trained_ppm):
    folder, _ = trained_ppm
    texts = ["<|user|>\nWhat is 5 and 3?\n<|assistant|>\n<code>\nx = 5 * 3\n<end_of_step>", "short"]
    merged, adapter = PPMScorer(str(folder)), PPMScorer(str(folder / "adapter"))
    for a, b in zip(merged.score(texts), adapter.score(texts)):
        assert a == pytest.approx(b, abs=1e-5)
    assert all(-1 <= s <= 1 for s in merged.score(texts))


def test_pairwise_loss_is_minus_log_sigmoid_of_the_margin(trained_ppm, tmp_path):
    """TRL's RewardTrainer loss on one pair equals the hand-computed value."""
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    folder, _ = trained_ppm
    scorer = PPMScorer(str(folder))
    chosen, rejected = "x = 1 * 3<end_of_step>", "x = 1 / 0<end_of_step>"
    rc, rr = scorer.raw([chosen, rejected]).tolist()
    expected = -torch.nn.functional.logsigmoid(torch.tensor(rc - rr)).item()
    args = RewardConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, max_length=64)
    trainer = RewardTrainer(
        model=scorer.model,
        args=args,
        processing_class=scorer.tokenizer,
        train_dataset=Dataset.from_list([{"chosen": chosen, "rejected": rejected}]),
    )
    batch = trainer.data_collator([trainer.train_dataset[0]])
    loss = trainer.compute_loss(trainer.model, batch).item()
    assert loss == pytest.approx(expected, rel=1e-4)


def test_ppm_resume_continues_from_the_checkpoint(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.jsonl", n=20, too_long=0)
    first = train_ppm(
        pairs, tmp_path / "ppm", PPMTrainConfig(**{**PPM_CFG.__dict__, "epochs": 1.0, "save_steps": 1}), progress=False
    )
    again = train_ppm(
        pairs, tmp_path / "ppm", PPMTrainConfig(**{**PPM_CFG.__dict__, "epochs": 2.0, "save_steps": 1}), progress=False
    )
    assert not first.resumed and again.resumed
    assert again.steps == 2 * first.steps
    # The history up to the checkpoint is restored, not recomputed.
    assert again.losses[: first.steps] == first.losses
    assert len(again.losses) == again.steps


@pytest.mark.parametrize(
    "content,message",
    [
        ("", "no pairs"),
        ("{not json\n", "not JSON"),
        ('{"prefix": "a", "positive": "b"}\n', "needs non-empty string"),
    ],
)
def test_bad_pair_files(tmp_path, content, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    with pytest.raises(DataFileError, match=message):
        train_ppm(bad, tmp_path / "out", PPM_CFG, progress=False)


def test_policy_label_mask_is_the_solution_only(tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    path = resolve_model("tiny")
    tok = AutoTokenizer.from_pretrained(path)
    prompt, completion = "<|user|>\nWhat is 2 and 3?\n<|assistant|>\n", "x = 2 * 3<end_of_step>"
    args = SFTConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, completion_only_loss=True, max_length=128)
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(path),
        args=args,
        processing_class=tok,
        train_dataset=Dataset.from_list([{"prompt": prompt, "completion": completion}]),
    )
    batch = trainer.data_collator([trainer.train_dataset[0]])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    n_prompt = len(tok(prompt)["input_ids"])
    assert labels[:n_prompt] == [-100] * n_prompt  # the prompt is masked
    assert labels[n_prompt:] == ids[n_prompt:]  # every solution token (and EOS) is learned
    assert tok.decode(ids[n_prompt:]).startswith(completion)


def test_policy_sft_trains_lora_and_writes_loadable_models(tmp_path):
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    m = train_policy(write_sft(tmp_path / "sft.jsonl"), tmp_path / "policy", SFT_CFG, progress=False)
    assert all(math.isfinite(x) for x in m.losses) and m.losses[-1] < m.losses[0]
    base = load_file(str(resolve_model("tiny") + "/model.safetensors"))
    merged = load_file(str(tmp_path / "policy" / "model.safetensors"))
    changed = {k for k in base if not torch.equal(base[k], merged[k])}
    assert changed and all(any(t in k for t in ("q_proj", "k_proj", "v_proj", "o_proj")) for k in changed)
    AutoPeftModelForCausalLM.from_pretrained(tmp_path / "policy" / "adapter")  # peft loads the adapter
    AutoModelForCausalLM.from_pretrained(tmp_path / "policy")  # and the merged weights load plainly


@pytest.mark.slow
def test_both_trainings_from_the_real_default_model(tmp_path):
    """A few steps of each from the embedded default model (offline)."""
    sft = train_policy(
        write_sft(tmp_path / "sft.jsonl", n=8),
        tmp_path / "policy",
        PolicyTrainConfig(base="default", epochs=1, batch_size=4, max_length=256),
        progress=False,
    )
    ppm = train_ppm(
        write_pairs(tmp_path / "pairs.jsonl", n=16, too_long=0),
        tmp_path / "ppm",
        PPMTrainConfig(base=str(tmp_path / "policy"), epochs=1, batch_size=4, max_length=256, eval_fraction=0.25),
        progress=False,
    )
    assert sft.steps == 2 and all(math.isfinite(x) for x in sft.losses)
    assert ppm.steps == 3 and all(math.isfinite(x) for x in ppm.losses)
    assert 0 <= ppm.eval_pairwise_accuracy <= 1
    assert len(PPMScorer(str(tmp_path / "ppm")).score(["x = 1<end_of_step>"])) == 1


def test_train_command(tmp_path):
    from typer.testing import CliRunner

    from rstar.cli import app

    runner = CliRunner()
    pairs = write_pairs(tmp_path / "pairs.jsonl", n=16)
    result = runner.invoke(
        app,
        [
            "train",
            "ppm",
            "--preset",
            "tiny",
            "--data",
            str(pairs),
            "--out",
            str(tmp_path / "ppm"),
            "ppm_train.epochs=1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "1 skipped as longer than max_length" in result.output and "pairwise accuracy" in result.output
    sft = write_sft(tmp_path / "sft.jsonl", n=8)
    result = runner.invoke(
        app,
        [
            "train",
            "policy",
            "--preset",
            "tiny",
            "--data",
            str(sft),
            "--out",
            str(tmp_path / "policy"),
            "policy_train.epochs=1",
        ],
    )
    assert result.exit_code == 0, result.output
    (tmp_path / "empty.jsonl").write_text("")
    result = runner.invoke(
        app, ["train", "ppm", "--preset", "tiny", "--data", str(tmp_path / "empty.jsonl"), "--out", str(tmp_path / "x")]
    )
    assert result.exit_code == 2 and "no pairs" in result.output


def test_two_training_processes_write_loadable_models_and_resume(tmp_path):
    """`launch.processes=2`: DDP over gloo on the CPU (torchrun), the batch split
    between the processes, one of them writing; a rerun resumes."""
    from peft import AutoPeftModelForCausalLM

    from rstar.train.launch import LaunchConfig, train

    two = LaunchConfig(processes=2)
    sft = write_sft(tmp_path / "sft.jsonl", n=16)
    m = train("policy", sft, tmp_path / "policy", PolicyTrainConfig(**{**SFT_CFG.__dict__, "epochs": 1.0}), two)
    assert m.processes == 2 and m.steps == 4 and not m.resumed  # 16 examples, 4 per step in all
    AutoPeftModelForCausalLM.from_pretrained(tmp_path / "policy" / "adapter")
    (tmp_path / "policy" / "metrics.json").unlink()
    again = train("policy", sft, tmp_path / "policy", PolicyTrainConfig(**{**SFT_CFG.__dict__, "epochs": 2.0}), two)
    assert again.resumed and again.steps == 8 and again.losses[:4] == m.losses
    pairs = write_pairs(tmp_path / "pairs.jsonl", n=20, too_long=0)
    ppm = train("ppm", pairs, tmp_path / "ppm", PPM_CFG, two)
    assert ppm.processes == 2 and 0 <= ppm.eval_pairwise_accuracy <= 1
    assert len(PPMScorer(str(tmp_path / "ppm")).score(["x = 1<end_of_step>"])) == 1
    with pytest.raises(ValueError, match="does not split among 3 processes"):
        train("ppm", pairs, tmp_path / "x", PPM_CFG, LaunchConfig(processes=3))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without GPUs")
def test_an_accelerate_config_without_gpus_is_refused_before_anything_runs(tmp_path):
    """accelerate drops FSDP and ZeRO on CPUs and runs each process alone
    (checked: DistributedType.NO, no process group), so every process would
    train the whole model and write the same folder."""
    from rstar.train.launch import LaunchConfig, train

    config = tmp_path / "fsdp.yaml"
    config.write_text("distributed_type: FSDP\nuse_cpu: true\nnum_processes: 2\n")
    pairs = write_pairs(tmp_path / "pairs.jsonl", n=20, too_long=0)
    with pytest.raises(ValueError, match="needs GPUs"):
        train("ppm", pairs, tmp_path / "ppm", PPM_CFG, LaunchConfig(processes=2, accelerate_config=str(config)))
    assert not (tmp_path / "ppm").exists()


def test_resume_passes_over_a_checkpoint_cut_short(tmp_path):
    """A kill while the trainer writes a checkpoint leaves a folder without
    trainer_state.json (written last): resume from the one before."""
    from rstar.train.common import last_checkpoint

    assert last_checkpoint(tmp_path) is None
    for step, complete in ((2, True), (10, True), (12, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"x")
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")


def test_score_is_tanh_of_the_head_over_the_scale(trained_ppm):
    folder, _ = trained_ppm
    texts = ["<|user|>\nWhat is 5 and 3?\n<|assistant|>\n<code>\nx = 5 * 3\n<end_of_step>"]
    raw = PPMScorer(str(folder)).raw(texts)
    for scale in (1.0, 5.0):
        assert PPMScorer(str(folder), scale=scale).score(texts) == pytest.approx((raw / scale).tanh().tolist())


def test_a_ppm_saved_the_reference_way_loads_and_scores_at_the_last_token(tmp_path):
    """A causal LM folder with value_head.bin (train/save_rm.py's layout): the
    head on the last real token's final hidden state, tanh(v / 5)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    policy = resolve_model("tiny")
    lm = AutoModelForCausalLM.from_pretrained(policy)
    lm.save_pretrained(tmp_path / "rm")
    AutoTokenizer.from_pretrained(policy).save_pretrained(tmp_path / "rm")
    torch.manual_seed(0)
    weight, bias = torch.randn(1, lm.config.hidden_size), torch.randn(1)
    torch.save({"v_head.summary.weight": weight, "v_head.summary.bias": bias}, tmp_path / "rm" / "value_head.bin")
    scorer = PPMScorer(str(tmp_path / "rm"))
    assert scorer.reference_layout
    texts = ["x = 1 * 3<end_of_step>", "a longer text to pad against: x = 1 / 0<end_of_step>"]
    tokenizer = AutoTokenizer.from_pretrained(policy)
    expected = []
    with torch.no_grad():
        for t in texts:
            ids = tokenizer(t, return_tensors="pt", add_special_tokens=False)
            hidden = lm(**ids, output_hidden_states=True).hidden_states[-1][0, -1]
            expected.append(torch.tanh((hidden @ weight[0] + bias[0]) / 5).item())
    assert scorer.score(texts) == pytest.approx(expected, abs=1e-5)
    torch.save({"v_head.other.weight": weight}, tmp_path / "rm" / "value_head.bin")
    with pytest.raises(ValueError, match="expected a linear value head"):
        PPMScorer(str(tmp_path / "rm"))


def test_training_from_the_reference_data_files(tmp_path):
    """The released formats (JSON arrays of {query, response} and {prompt, pos,
    neg, pos_count, neg_count}) train both models; the policy folder records
    its prompt style."""
    from rstar.prompts import prompt_style_of, sft_prompt

    sft = [
        {"query": f"What is {i} and 3?", "response": f"<code>\n# Step 1: compute\nx = {i} * 3\n<end_of_step>"}
        for i in range(12)
    ]
    (tmp_path / "sft.json").write_text(json.dumps(sft, indent=4))
    m = train_policy(
        tmp_path / "sft.json",
        tmp_path / "policy",
        PolicyTrainConfig(**{**SFT_CFG.__dict__, "epochs": 1.0}),
        progress=False,
    )
    assert m.examples == 12 and m.steps > 0
    assert prompt_style_of(str(tmp_path / "policy")) == "sft" == prompt_style_of(str(tmp_path / "policy" / "adapter"))
    pairs = [
        {
            "prompt": sft_prompt(f"What is {i} and 3?"),
            "pos": f"<code>\nx = {i} * 3\n<end_of_step>",
            "neg": f"<code>\nx = {i} / 0\n<end_of_step>",
            "pos_count": 2,
            "neg_count": 2,
        }
        for i in range(12)
    ]
    (tmp_path / "rm.json").write_text(json.dumps(pairs, indent=4))
    m = train_ppm(
        tmp_path / "rm.json", tmp_path / "ppm", PPMTrainConfig(**{**PPM_CFG.__dict__, "epochs": 1.0}), progress=False
    )
    assert m.pairs == 12 and m.eval_pairs >= 1 and m.train_pairs + m.eval_pairs == 12
    (tmp_path / "bad.json").write_text('[{"query": 3, "response": "x"}]')
    with pytest.raises(DataFileError, match="record 1"):
        train_policy(tmp_path / "bad.json", tmp_path / "p2", SFT_CFG, progress=False)
