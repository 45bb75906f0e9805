"""HF export: the folder reloads in stock transformers with the trainer's logits, and sharded output works."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from slime.fsdp import FSDPConfig, FSDPPolicy, hf_export
from slime.fsdp.hf_export import write_hf_folder


def hf_log_probs(model_dir, batch) -> list[torch.Tensor]:
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa").eval()
    out = []
    with torch.no_grad():
        for s in batch.samples:
            logp = torch.log_softmax(model(input_ids=torch.tensor([s.tokens])).logits[0].float(), -1)
            targets = torch.tensor(s.tokens[s.prompt_length :]).unsqueeze(-1)
            out.append(logp[s.prompt_length - 1 : -1].gather(-1, targets).squeeze(-1))
    return out


def test_export_reloads_with_identical_logits(tiny_qwen3_dir, dist_ws1, make_batch, tmp_path):
    batch = make_batch(6, seed=20)
    policy = FSDPPolicy(FSDPConfig(hf_checkpoint=str(tiny_qwen3_dir), lr=1e-2), dist_ws1)
    policy.train(0, batch)
    trained = policy.compute_log_probs(batch)
    out = policy.export_hf(tmp_path / "hf")

    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]
        + [p.name for p in tiny_qwen3_dir.iterdir() if p.name.endswith((".jinja", "special_tokens_map.json"))]
    )
    assert AutoTokenizer.from_pretrained(out).vocab_size == AutoTokenizer.from_pretrained(tiny_qwen3_dir).vocab_size
    original = load_file(tiny_qwen3_dir / "model.safetensors")
    exported = load_file(out / "model.safetensors")
    assert exported.keys() == original.keys()
    assert all(exported[k].dtype == original[k].dtype for k in exported)
    assert any(not torch.equal(exported[k], original[k]) for k in exported)  # it is the trained model

    # Same packed computation on the exported weights: identical; stock transformers: fp32 rounding only.
    again = FSDPPolicy(FSDPConfig(hf_checkpoint=str(out)), dist_ws1).compute_log_probs(batch)
    assert all(torch.equal(a, b) for a, b in zip(again, trained, strict=True))
    for a, b in zip(hf_log_probs(out, batch), trained, strict=True):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=0)


def test_sharded_export_and_bf16(tiny_qwen3_dir, dist_ws1, tmp_path):
    policy = FSDPPolicy(FSDPConfig(hf_checkpoint=str(tiny_qwen3_dir), export_dtype="bfloat16"), dist_ws1)
    out = write_hf_folder(
        policy.export_weights(), tmp_path / "sharded", hf_checkpoint=tiny_qwen3_dir,
        dtype=policy.export_dtype, is_writer=True, shard_bytes=20_000,
    )  # fmt: skip
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.dtype == torch.bfloat16
    reference = AutoModelForCausalLM.from_pretrained(tiny_qwen3_dir)
    for name, tensor in reference.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor.to(torch.bfloat16)), name


def test_export_weights_names_and_buckets(tiny_qwen3_dir, dist_ws1, monkeypatch):
    policy = FSDPPolicy(FSDPConfig(hf_checkpoint=str(tiny_qwen3_dir), export_dtype="float32"), dist_ws1)
    assert sorted(name for name, _ in policy.export_weights()) == sorted(
        load_file(tiny_qwen3_dir / "model.safetensors")
    )

    events: list[tuple[str, str]] = []
    plan = hf_export.export_plan(policy.model, torch.float32)

    def traced(name, gather):
        events.append(("gather", name))
        return gather()

    monkeypatch.setattr(hf_export, "export_plan", lambda *a: [(n, lambda n=n, g=g: traced(n, g)) for n, g in plan])
    bucket = 64 * 1024
    sizes = {}
    for name, tensor in hf_export.iter_hf_weights(policy.model, bucket_bytes=bucket, dtype=torch.float32):
        sizes[name] = tensor.numel() * tensor.element_size()
        events.append(("yield", name))
    in_flight, peak = 0, 0
    for kind, name in events:
        in_flight += sizes[name] if kind == "gather" else -sizes[name]
        peak = max(peak, in_flight)
    assert peak <= bucket + max(sizes.values())  # never more than one bucket materialised
    assert events.index(("yield", plan[0][0])) < len(plan)  # streaming: the first bucket leaves early
    assert len(sizes) == len(plan)
