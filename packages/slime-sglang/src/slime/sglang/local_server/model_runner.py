"""`ModelRunner`: a transformers causal LM driven step by step (prefill, decode) for the local server.

It owns the model and tokenizer, runs batched prefill with left padding and batched one-token decode steps over
a `KVBatch`, and replaces weights in place (`load_weights`, `load_from_disk`). A block-FP8 checkpoint (config.json
`quantization_config` with `quant_method` fp8) is served by a float model: `weight` + `weight_scale_inv` pairs are
dequantized on load and on every weight update (`slime.sync.fp8_rollout.Fp8Dequantizer`). Every method must be
called from the scheduler's single thread. It does not sample, decide when a sequence stops, or speak HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from slime.sglang.local_server.kv_batch import KVBatch
from slime.sync.fp8_rollout import Fp8Dequantizer, Fp8QuantPlan
from slime.types import WeightSyncError


class ModelRunner:
    """Load `model_path` (an HF checkpoint folder) for CPU (or any torch device) inference."""

    def __init__(self, model_path: str, *, dtype: str = "auto", device: str = "cpu") -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer  # slow import, only in the server process

        self.model_path = model_path
        self.device = torch.device(device)
        torch_dtype: Any = dtype if dtype == "auto" else getattr(torch, dtype)
        plan = Fp8QuantPlan.from_hf_folder(model_path)
        self.fp8 = None if plan is None else Fp8Dequantizer(plan.block_size)
        """Set when the checkpoint is block FP8: incoming FP8 pairs are dequantized into the float model."""
        if plan is None:
            self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch_dtype).to(self.device).eval()
        else:
            self.model = _float_model(model_path, torch_dtype).to(self.device).eval()
            self._load_fp8_checkpoint(model_path)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.config = self.model.config
        self.vocab_size = int(self.model.get_output_embeddings().weight.shape[0])
        self.eos_token_ids = _eos_ids(self.model, self.tokenizer)
        self.pad_token_id = (
            next(iter(self.eos_token_ids), 0)
            if self.tokenizer.pad_token_id is None
            else int(self.tokenizer.pad_token_id)
        )

    @torch.inference_mode()
    def prefill(self, prompts: Sequence[Sequence[int]]) -> tuple[KVBatch, torch.Tensor]:
        """Run the prompts as one left-padded batch; return their cache and the logits of each last token."""
        from transformers.cache_utils import DynamicCache

        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            mask[row, width - len(prompt) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=positions.to(self.device),
            past_key_values=DynamicCache(config=self.config),
            use_cache=True,
            logits_to_keep=1,
        )
        batch = KVBatch(layers=_layers(out.past_key_values), mask=mask.to(self.device), lengths=mask.sum(-1))
        batch.zero_padding()
        return batch, out.logits[:, -1].float().cpu()

    @torch.inference_mode()
    def input_logprobs(self, input_ids: Sequence[int], first: int) -> list[float]:
        """Log-probs of `input_ids[k]` given `input_ids[:k]` for k = `first` .. end (`first` >= 1; fp32 softmax).

        One forward of the whole sequence without padding or cache (the `/generate` prompt-scoring path).
        """
        if first < 1:
            raise ValueError(f"first must be >= 1 (nothing predicts input_ids[0]), got {first}")
        ids = torch.tensor([list(input_ids)], dtype=torch.long, device=self.device)
        # logits at positions first-1 .. n-1; the last one predicts a token after the input and is dropped
        out = self.model(input_ids=ids, use_cache=False, logits_to_keep=len(input_ids) - first + 1)
        logprobs = torch.log_softmax(out.logits[0, :-1].float(), dim=-1)
        targets = ids[0, first:]
        return logprobs.gather(-1, targets[:, None])[:, 0].cpu().tolist()

    @torch.inference_mode()
    def decode(self, batch: KVBatch, tokens: torch.Tensor) -> tuple[KVBatch, torch.Tensor]:
        """Feed one token per row (`tokens` [B]); return the grown cache and the next-token logits [B, V]."""
        from transformers.cache_utils import DynamicCache

        mask = torch.cat([batch.mask, torch.ones((batch.batch_size, 1), dtype=batch.mask.dtype, device=self.device)], 1)
        out = self.model(
            input_ids=tokens.view(-1, 1).to(self.device),
            attention_mask=mask,
            position_ids=batch.lengths.view(-1, 1).to(self.device),
            past_key_values=DynamicCache(ddp_cache_data=batch.layers),
            use_cache=True,
        )
        grown = KVBatch(layers=_layers(out.past_key_values), mask=mask, lengths=batch.lengths + 1)
        return grown, out.logits[:, -1].float().cpu()

    @torch.no_grad()
    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> int:
        """Copy HF-named tensors into the model in place; all-or-nothing. Returns the number of tensors loaded.

        Raises:
            WeightSyncError: an unknown name or a shape mismatch; the model keeps its previous weights.
        """
        params = self.model.state_dict(keep_vars=True)
        pending = list(named_tensors) if self.fp8 is None else self.fp8.dequantize(named_tensors)
        for name, tensor in pending:
            if name not in params:
                known = ", ".join(sorted(params)[:4])
                raise WeightSyncError(
                    f"weight {name!r} is not a parameter of {self.model_path} (names look like {known}, ...)."
                )
            if tuple(tensor.shape) != tuple(params[name].shape):
                raise WeightSyncError(
                    f"weight {name!r} has shape {tuple(tensor.shape)}, the model expects {tuple(params[name].shape)}."
                )
        for name, tensor in pending:
            params[name].data.copy_(tensor.to(device=params[name].device, dtype=params[name].dtype))
        return len(pending)

    def load_from_disk(self, path: str) -> int:
        """Load every `*.safetensors` file of folder `path` (or the one file `path`) with `load_weights`."""
        from safetensors.torch import load_file

        root = Path(path)
        files = [root] if root.is_file() else sorted(root.glob("*.safetensors"))
        if not files:
            raise WeightSyncError(f"no *.safetensors file under {path!r}; pass an HF checkpoint folder.")
        named: list[tuple[str, torch.Tensor]] = []
        for file in files:
            named.extend(load_file(str(file)).items())
        count = self.load_weights(named)
        if self.fp8 is not None:
            self.fp8.check_complete(path)
        return count

    def _load_fp8_checkpoint(self, path: str) -> None:
        """Fill the freshly built float model from the FP8 folder; every parameter must come from it."""
        from safetensors import safe_open

        stored: set[str] = set()
        for file in Path(path).glob("*.safetensors"):
            with safe_open(str(file), "pt") as handle:
                stored.update(handle.keys())
        self.load_from_disk(path)
        expected = set(self.model.state_dict())
        if getattr(self.model.config, "tie_word_embeddings", False):
            expected.discard("lm_head.weight")
        missing = sorted(expected - stored)
        if missing:
            raise WeightSyncError(
                f"FP8 checkpoint {path!r} lacks {len(missing)} weight(s) of the model ({', '.join(missing[:4])}); "
                "write it with `slime-convert hf-to-fp8` from the complete BF16 folder."
            )

    def model_info(self) -> dict[str, Any]:
        """The `/model_info` fields that come from the model."""
        return {
            "model_type": getattr(self.config, "model_type", None),
            "architectures": getattr(self.config, "architectures", None),
        }


def _float_model(model_path: str, torch_dtype: Any) -> Any:
    """The model of `model_path`'s config without its quantization_config, weights not loaded."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_path)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    if torch_dtype == "auto":
        torch_dtype = getattr(config, "dtype", None) or torch.float32
        torch_dtype = getattr(torch, torch_dtype) if isinstance(torch_dtype, str) else torch_dtype
    return AutoModelForCausalLM.from_config(config, dtype=torch_dtype)


def _layers(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        ids.update([value] if isinstance(value, int) else (value or []))
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return frozenset(int(i) for i in ids)
