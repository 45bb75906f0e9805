"""CUDA graphs over static-shape training micro-batches (`--train-cuda-graphs`): the model's forward and backward
captured once per shape and replayed for every micro-batch.

Why: at small models the eager Megatron step is bound by the host, not the GPU. For the Qwen3-0.6B shape on packed
4k micro-batches an H100 ran ~1.3 s of kernels in a ~1.7 s step; the rest was Python launching ~10k kernels (about
1,800 linear autograd functions, 3,600 gradient hooks, norms and elementwise work). A replayed graph launches them
all in one call.

How: every training micro-batch is laid out with the same shapes, so that one captured graph serves them all:

- its packed row is padded to `tokens` (`--max-tokens-per-gpu` rounded up to the pad multiple), the added tokens
  forming one more sequence of their own, so they attend only to each other and never to real tokens;
- its `cu_seqlens` is padded to a bucket's length (a power of two, at least `MIN_SEQUENCES` sequences) by repeating
  the last offset: empty sequences, which the varlen attention kernel skips;
- `max_seqlen` is always `tokens`.

One graph pair (forward, backward) is captured per bucket, lazily (`_Captured`); all buckets share one memory pool,
which is safe because a micro-batch's forward and backward run before the next micro-batch starts (pipeline
parallelism, which interleaves them, is refused). The graphs cover the model up to its final norm
(`response_rows.trunk_only`); the output layer (on the response rows only) and the loss stay eager. The replayed
backward returns each parameter's gradient to autograd, so Megatron's DDP hooks add them into the fp32 `main_grad`
buffers exactly as in eager mode; the linear layers with gradient-accumulation fusion (`slime.megatron.wgrad_fusion`)
accumulate into `main_grad` inside the graph instead, and their parameters get Megatron's placeholder gradient.

Not covered, and refused by `check_train_graphs`: tensor and context parallelism (not yet run on several GPUs),
pipeline parallelism, MoE layers (token routing has data-dependent shapes), multi-token prediction, recomputation,
dropout (the graph would replay one random mask). Forward-only passes (log-probs) stay eager. A micro-batch longer
than `tokens` (one sample over the cap) runs eagerly. The captured graphs address the parameters' storage, so
`reset()` must drop them when the weights move (the colocated offload does).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from slime.megatron.fused_elementwise import static_region
from slime.megatron.packed_rope import PackedSeqParamsWithPositions
from slime.megatron.packing import PackedMicroBatch
from slime.megatron.response_rows import gpt_model, trunk_only
from slime.megatron.wgrad_fusion import gradient_placeholder
from slime.types import ConfigError

MIN_SEQUENCES = 16
"""Smallest bucket: a micro-batch of up to 15 samples (plus the padding sequence) uses the first graph."""
WARMUP_ITERS = 2
"""Eager forward+backward runs before the first capture (lazy initialisation such as cuBLAS workspaces and the
compiled fusions' compilation stays out of it). Later captures skip them: only `cu_seqlens`' length differs, and an
eager pass beside the first graph's pool would need the activations' memory twice (16k-token micro-batches of the
0.6B shape ran out of an H100's memory so)."""


def check_train_graphs(config, *, device: torch.device) -> None:
    """Refuse what a replayed graph cannot do (see the module docstring); `config` is Megatron's TransformerConfig."""
    fix = "drop --train-cuda-graphs"
    if device.type != "cuda":
        raise ConfigError(f"--train-cuda-graphs needs a CUDA device (the actor runs on {device.type}); {fix}.")
    refused = {
        # not yet proven: a captured graph with tensor-parallel collectives inside has not run on several GPUs here
        "tensor_model_parallel_size": (config.tensor_model_parallel_size, 1),
        "context_parallel_size": (config.context_parallel_size, 1),
        "pipeline_model_parallel_size": (config.pipeline_model_parallel_size, 1),
        "virtual_pipeline_model_parallel_size": (config.virtual_pipeline_model_parallel_size, None),
        "num_moe_experts": (config.num_moe_experts, None),
        "mtp_num_layers": (config.mtp_num_layers, None),  # the eager output layer would see stacked sequences
        "recompute_granularity": (config.recompute_granularity, None),
        "hidden_dropout": (config.hidden_dropout, 0.0),
        "attention_dropout": (config.attention_dropout, 0.0),
    }
    for name, (value, allowed) in refused.items():
        if value != allowed and not (allowed is None and not value):
            flag = "--" + name.replace("_", "-")
            raise ConfigError(
                f"{flag}={value!r} with --train-cuda-graphs: graphs need {allowed!r}; {fix} or unset {flag}."
            )


def sequence_slots(num_offsets: int) -> int:
    """The bucket for a row with `num_offsets` cu_seqlens entries: room for its sequences plus one padding sequence."""
    needed = num_offsets  # (num_offsets - 1) sequences + the padding sequence
    return max(MIN_SEQUENCES, 1 << (needed - 1).bit_length())


def static_row(mb: PackedMicroBatch, tokens: int, slots: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`mb`'s row in the static layout: token ids and positions `[1, tokens]`, `cu_seqlens` `[slots + 1]`.

    The tokens added past the row are one more sequence; the offsets after it repeat `tokens` (empty sequences).
    Everything stays on the device: no host synchronisation.
    """
    pad = tokens - mb.tokens.size(1)
    if pad < 0 or mb.cu_seqlens.numel() > slots:
        raise ValueError(f"a row of {mb.tokens.size(1)} tokens / {mb.cu_seqlens.numel()} offsets exceeds the layout")
    ids = F.pad(mb.tokens, (0, pad))
    positions = F.pad(mb.position_ids, (0, pad))
    fill = mb.cu_seqlens.new_full((slots + 1 - mb.cu_seqlens.numel(),), tokens)
    return ids, positions, torch.cat([mb.cu_seqlens, fill])


class StaticRowModel(torch.nn.Module):
    """The model up to its final norm (`response_rows.trunk_only`) on a packed row given as tensors only, with a
    constant `max_seqlen`: what a graph captures. Returns the hidden states `[1, tokens, H]`."""

    def __init__(self, model: torch.nn.Module, tokens: int) -> None:
        super().__init__()
        self.model = model
        self.tokens = tokens

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
        params = PackedSeqParamsWithPositions.for_row(cu_seqlens, self.tokens, position_ids[0])
        with trunk_only(gpt_model(self.model)):
            return self.model(
                input_ids=input_ids, position_ids=position_ids, attention_mask=None, packed_seq_params=params
            )

    def trunk_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        """The trainable parameters the graph uses: all but the output layer's (it runs eagerly)."""
        head = {id(p) for p in gpt_model(self.model).output_layer.parameters()}
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad and id(p) not in head]


class GradRows:
    """The captured backward's input, the gradient of the `[1, T, H]` hidden states, written in place by the
    response-row selection (`slime.megatron.response_rows.select_rows`): only the selected rows are nonzero, so each
    write zeroes the rows of the previous one instead of the whole buffer, and the replay needs no copy."""

    def __init__(self, buffer: torch.Tensor) -> None:
        self.buffer = buffer.zero_()
        self._rows: torch.Tensor | None = None
        self._dirty = False

    def write(self, index: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """The buffer holding `grad` at rows `index` of `buffer[0]` and zeros elsewhere."""
        rows = self.buffer[0]
        if self._dirty:
            self.buffer.zero_()
            self._dirty = False
        elif self._rows is not None:
            rows.index_fill_(0, self._rows, 0)
        rows.index_copy_(0, index, grad)
        self._rows = index
        return self.buffer

    def overwritten(self) -> None:
        """Someone else filled the buffer: the next write clears all of it."""
        self._dirty, self._rows = True, None


class _Captured:
    """One captured forward and backward of a `StaticRowModel` on a given `cu_seqlens` length.

    `torch.cuda.make_graphed_callables` cannot be used here: it differentiates with respect to the module's own
    parameters, whose autograd accumulator nodes Megatron's DDP created (and keeps alive, for its hooks) on the
    default stream, and the capture then fails (`cudaErrorStreamCaptureImplicit`: autograd would make the legacy
    stream wait on the capturing one). So the graphs differentiate with respect to aliases of the parameters (same
    storage, fresh leaves), and `_Replay` hands those gradients to the real parameters outside the graph, where
    DDP's hooks run eagerly as usual.
    """

    def __init__(self, row_model: StaticRowModel, sample: tuple[torch.Tensor, ...], pool, *, warmup: int) -> None:
        from torch.func import functional_call

        names, params = zip(*row_model.trunk_parameters(), strict=True)
        self.params: tuple[torch.Tensor, ...] = params
        aliases = [_alias(p) for p in params]
        self.inputs = tuple(t.clone() for t in sample)

        def run() -> torch.Tensor:
            return functional_call(row_model, dict(zip(names, aliases, strict=True)), self.inputs)

        with static_region():  # the compiled elementwise kernels (`slime.megatron.fused_elementwise`)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(warmup):
                    out = run()
                    torch.autograd.grad(out, aliases, torch.empty_like(out), allow_unused=True)
                    del out
            torch.cuda.current_stream().wait_stream(side)
            self.forward_graph, self.backward_graph = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.forward_graph, pool=pool):
                self.output = run()
            self.grad_output = torch.empty_like(self.output)
            with torch.cuda.graph(self.backward_graph, pool=pool):
                self.grads = torch.autograd.grad(self.output, aliases, self.grad_output, allow_unused=True)
        self.output = self.output.detach()
        self.grad_rows = GradRows(self.grad_output)
        # no gradient out of the graph but a `main_grad`: a fused linear's weight, accumulated inside the graph
        self.fused = tuple(g is None and hasattr(p, "main_grad") for g, p in zip(self.grads, params, strict=True))

    def __call__(self, row: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return _Replay.apply(self, *row, *self.params)

    def param_grads(self) -> tuple[torch.Tensor | None, ...]:
        """What autograd receives for each parameter after a replay of the backward: views of the graph's gradient
        buffers (DDP's hooks add them into `main_grad` before the next replay), or for a fused linear's weight the
        placeholder of Megatron's protocol (`wgrad_fusion.gradient_placeholder`)."""
        return tuple(
            gradient_placeholder(p) if fused else None if g is None else g.detach()
            for p, g, fused in zip(self.params, self.grads, self.fused, strict=True)
        )


def _alias(param: torch.Tensor) -> torch.Tensor:
    """A fresh leaf on `param`'s storage, carrying its `main_grad` for the fused linears (`wgrad_fusion`)."""
    alias = param.detach().requires_grad_()
    if hasattr(param, "main_grad"):
        alias.main_grad = param.main_grad
    return alias


class _Replay(torch.autograd.Function):
    """Replays the captured forward; its backward replays the captured backward and returns the parameters'
    gradients (`_Captured.param_grads`)."""

    @staticmethod
    def forward(ctx, captured: _Captured, *inputs: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        row = inputs[: len(captured.inputs)]  # then the parameters, read in place by the graph
        for static, given in zip(captured.inputs, row, strict=True):
            static.copy_(given)
        captured.forward_graph.replay()
        ctx.captured, ctx.num_row = captured, len(captured.inputs)
        return captured.output.detach()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: torch.Tensor):  # noqa: ANN001, ANN205
        captured = ctx.captured
        if grad_output.data_ptr() != captured.grad_output.data_ptr():  # not written in place by `GradRows`
            captured.grad_output.copy_(grad_output)
            captured.grad_rows.overwritten()
        captured.backward_graph.replay()
        return (None, *([None] * ctx.num_row), *captured.param_grads())


class TrainGraphs:
    """Captured forward+backward of one model chunk per `cu_seqlens` bucket (see the module docstring)."""

    def __init__(self, model: torch.nn.Module, *, tokens: int) -> None:
        self._row_model = StaticRowModel(model, tokens)
        self.tokens = tokens
        self._captured: dict[int, _Captured] = {}
        self._pool = None
        self.captures = 0
        """Graphs captured so far (a figure for the logs: every `reset` makes the next step capture again)."""

    def accepts(self, mb: PackedMicroBatch) -> bool:
        """Whether `mb` fits the static layout (a sample longer than the cap runs eagerly)."""
        return mb.tokens.size(1) <= self.tokens

    def __call__(self, mb: PackedMicroBatch) -> tuple[torch.Tensor, GradRows]:
        """The model's final hidden states for `mb` (`[1, tokens, H]`, rows past `mb`'s own are padding),
        differentiable, and where the response-row selection may write its gradient (`GradRows`)."""
        slots = sequence_slots(mb.cu_seqlens.numel())
        row = static_row(mb, self.tokens, slots)
        captured = self._captured.get(slots)
        if captured is None:
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            warmup = WARMUP_ITERS if self.captures == 0 else 0
            captured = self._captured[slots] = _Captured(self._row_model, row, self._pool, warmup=warmup)
            self.captures += 1
        return captured(row), captured.grad_rows

    def reset(self) -> None:
        """Drop every graph and its memory pool (before the parameters' storage moves, or to free the memory)."""
        self._captured.clear()
        self._pool = None
