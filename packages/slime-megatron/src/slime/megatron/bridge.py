"""The one adapter between slime and mbridge 0.15.1: HF config -> Megatron GPTModel, HF weights in and out.

mbridge maps HF checkpoints to Megatron-core models (qwen2/qwen3/llama/moe families). Used as shipped it does
not work with transformers 5 or without TransformerEngine; each workaround below is applied here and only here:

1. rope_theta: transformers 5 moved `config.rope_theta` into `config.rope_parameters["rope_theta"]`, and
   mbridge's `_get_gptmodel_args` still reads the attribute. We copy it back onto the config object.
2. Layer spec: mbridge hard-codes `get_gpt_decoder_block_spec(use_transformer_engine=True)` (NameError on
   `TENorm` without TE). Without TE we substitute `slime.megatron.layer_spec.local_block_spec`.
3. Name maps: TE fuses the pre-attention / pre-MLP norms into `linear_qkv.layer_norm_weight` /
   `linear_fc1.layer_norm_weight`; the local spec has separate `input_layernorm` / `pre_mlp_layernorm`
   modules. We add those two names to this bridge instance's maps (`LOCAL_TO_TE_NAMES` gives the mapping, also
   used to keep torch_dist checkpoints keyed like TE-built ones).
4. Shared maps: mbridge's Qwen2 bridge writes the tied-embedding mapping into the *class* dict, so one tied
   model would make every later bridge in the process export `output_layer` as `embed_tokens`. We give each
   instance its own copies and set that entry from this model's `tie_word_embeddings`.
5. Defaults: mbridge defaults to `masked_softmax_fusion=True`, `sequence_parallel = tp > 1` and GPU-side init;
   `set_extra_args` receives our resolved Megatron flags (`--sequence-parallel` etc.), which override those.
6. Placement: mbridge's `get_model` calls `model.cuda()`; we build through its model provider instead and place,
   wrap and load the model ourselves (`slime.megatron.model`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from mbridge import AutoBridge

from slime.megatron.layer_spec import local_block_spec, transformer_engine_available
from slime.megatron.wgrad_fusion import fuse_output_layer

LOCAL_TO_TE_NAMES = {
    "input_layernorm.weight": "self_attention.linear_qkv.layer_norm_weight",
    "pre_mlp_layernorm.weight": "mlp.linear_fc1.layer_norm_weight",
}
"""Local-spec parameter suffix -> the TE-spec suffix of the same weight."""


def fix_hf_config(hf_config: Any) -> Any:
    """Apply workaround 1 in place (idempotent) and return the config."""
    if getattr(hf_config, "rope_theta", None) is None:
        params = getattr(hf_config, "rope_parameters", None) or {}
        if "rope_theta" in params:
            hf_config.rope_theta = params["rope_theta"]
    return hf_config


class ModelBridge:
    """Builds GPTModels for one HF architecture and converts weights between HF and Megatron layouts.

    Megatron's parallel state must be initialized before construction (mbridge reads TP/PP/EP ranks from it).
    """

    def __init__(
        self,
        hf_config: Any,
        *,
        dtype: torch.dtype,
        transformer_overrides: Mapping[str, Any],
        make_vocab_size_divisible_by: int | None = None,
        use_transformer_engine: bool | None = None,
        wgrad_fusion: bool = False,
    ) -> None:
        """`wgrad_fusion`: the local spec's linear layers and the output layer accumulate weight gradients into
        `main_grad` (`slime.megatron.wgrad_fusion`); TransformerEngine's layers fuse on their own."""
        self.hf_config = fix_hf_config(hf_config)
        self.use_transformer_engine = (
            transformer_engine_available() if use_transformer_engine is None else use_transformer_engine
        )
        self._bridge = AutoBridge.from_config(
            self.hf_config, dtype=dtype, make_vocab_size_divisible_by=make_vocab_size_divisible_by
        )
        self._bridge.set_extra_args(**transformer_overrides)
        self._wgrad_fusion = wgrad_fusion and not self.use_transformer_engine
        self._own_name_maps()
        if not self.use_transformer_engine:
            self._use_local_spec(self._wgrad_fusion)

    @property
    def config(self):
        """The Megatron `TransformerConfig` the models are built with."""
        return self._bridge.config

    @property
    def vocab_size(self) -> int:
        """The HF vocabulary size (without Megatron's padding)."""
        return int(self.hf_config.vocab_size)

    def _own_name_maps(self) -> None:
        bridge = self._bridge
        tied = bool(getattr(self.hf_config, "tie_word_embeddings", False))
        direct = dict(bridge._DIRECT_MAPPING)
        direct["output_layer.weight"] = "model.embed_tokens.weight" if tied else "lm_head.weight"
        bridge._DIRECT_MAPPING = direct
        bridge._ATTENTION_MAPPING = dict(bridge._ATTENTION_MAPPING)
        bridge._MLP_MAPPING = dict(bridge._MLP_MAPPING)
        bridge._OTHER_MAPPING = dict(bridge._OTHER_MAPPING)

    def _use_local_spec(self, wgrad_fusion: bool) -> None:
        bridge = self._bridge

        def spec(vp_stage: int | None = None):
            bridge.has_vp_stage = True
            return local_block_spec(bridge.config, vp_stage, wgrad_fusion=wgrad_fusion)

        bridge._get_transformer_layer_spec = spec
        bridge._OTHER_MAPPING["input_layernorm.weight"] = ["model.layers.{layer_number}.input_layernorm.weight"]
        bridge._MLP_MAPPING["pre_mlp_layernorm.weight"] = [
            "model.layers.{layer_number}.post_attention_layernorm.weight"
        ]

    def build(self, *, pre_process: bool, post_process: bool, vp_stage: int | None = None) -> torch.nn.Module:
        """A fresh GPTModel for this pipeline stage, initialised as Megatron does (on the CPU or current GPU)."""
        provider = self._bridge._model_provider([])
        stage = {} if vp_stage is None else {"vp_stage": vp_stage}
        model = provider(pre_process=pre_process, post_process=post_process, **stage)
        if self._wgrad_fusion:  # the decoder's linears come fused from the local spec; GPTModel builds this one
            fuse_output_layer(model)
        return model

    @property
    def padded_vocab_size(self) -> int:
        """Rows of the embedding / output layer (HF vocab padded as Megatron pads it); valid after `build`."""
        return int(self._bridge.padded_vocab_size or self.vocab_size)

    def load_hf_weights(self, models: list[torch.nn.Module], hf_dir: str) -> None:
        """Copy the HF safetensors weights in `hf_dir` into `models` (TP rank 0 reads, then scatters)."""
        self._bridge.load_weights(models, hf_dir)

    def export_hf_weights(self, models: list[torch.nn.Module]) -> Iterator[tuple[str, torch.Tensor]]:
        """Yield `(hf_name, full tensor)` one at a time, gathered over TP/EP and broadcast over PP (collective)."""
        mpu = self._bridge.mpu
        if mpu.pp_size > 1 or mpu.ep_size > 1:
            yield from self._bridge.export_weights(models)
            return
        yield from self._export_without_pp(models)

    def _export_without_pp(self, models: list[torch.nn.Module]) -> Iterator[tuple[str, torch.Tensor]]:
        """mbridge's export walk for PP = EP = 1, minus its per-tensor pipeline broadcasts.

        mbridge sends every tensor's name and shape across the pipeline group (four object collectives a tensor,
        each a GPU round trip), which is most of the 0.55-0.69 s a Qwen3-0.6B push took on an H100 against 0.12 s
        for fsdp. Without PP each rank holds every layer, so the names are local; the TP gather, the merge and
        the HF conversion stay mbridge's own (same order, same tensors: the parity tests compare with the source).
        """
        from mbridge.core.util import unwrap_model

        bridge, mpu = self._bridge, self._bridge.mpu
        for model in (unwrap_model(m) for m in models):
            global_names = bridge._weight_name_mapping_mcore_local_to_global(model, consider_ep=False)
            params = dict(model.named_parameters())
            extra = {k: v for k, v in model.state_dict().items()
                     if "_extra_state" not in k and "expert_bias" in k and k not in params}  # fmt: skip
            for local_name, param in [*params.items(), *extra.items()]:
                name = global_names[local_name]
                tensor = param
                if getattr(param, "tensor_model_parallel", False):
                    shards = [param]
                    if mpu.tp_size > 1:
                        shards = [torch.empty_like(param) for _ in range(mpu.tp_size)]
                        torch.distributed.all_gather(shards, param, group=mpu.tp_group)
                    tensor = bridge._weight_merge_across_tp(name, shards, param)
                hf_names, hf_tensors = bridge._weight_to_hf_format(name, tensor)
                yield from zip(hf_names, hf_tensors, strict=True)
