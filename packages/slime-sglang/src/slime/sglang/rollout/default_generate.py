"""The default per-sample generate (slime's `generate`): one `/generate` call through the router.

It fits `slime.types.GenerateFn`, so custom generate functions can wrap it (the search-R1 example calls
`call_router` for each model turn). A fresh sample is tokenized (chat template first when its prompt is a
message list); a partial sample (status ABORTED with response tokens, from the partial-rollout buffer)
continues from `sample.tokens` and gets `max_new_tokens` minus the tokens it already has, in its own copy
of the parameters; with nothing left it becomes TRUNCATED without a call. Under
`--sglang-enable-deterministic-inference` the request carries the sample's own `sampling_seed` (unless the
caller set one). The answer's tokens and log-probs
are appended with `Sample.append_response` and the finish reason sets the status (abort -> ABORTED).
It does not score, retry or decide about aborts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slime.sglang.rollout.prompt import prompt_token_ids
from slime.sglang.rollout.runtime import RolloutRuntime
from slime.sglang.rollout.sampling import sample_sampling_seed
from slime.types import ContractError, GenerateOutput, Sample, Status

_CONTINUABLE = (Status.PENDING, Status.ABORTED)


async def call_router(args: Any, input_ids: list[int], sampling_params: Mapping[str, Any]) -> GenerateOutput:
    """POST one `/generate` (token ids in, tokens + log-probs out) to the router of `args`."""
    return await RolloutRuntime.for_args(args).client.generate(input_ids, sampling_params, return_logprob=True)


def apply_output(sample: Sample, output: GenerateOutput, *, trainable: bool = True) -> None:
    """Append one model turn's output to `sample` and set its status from the finish reason."""
    sample.append_response(
        output.output_ids,
        output.output_log_probs,
        is_trainable=trainable,
        text=output.text,
        weight_version=output.weight_version,
    )
    sample.status = Status.from_finish_reason(output.finish_reason)


async def generate(args: Any, sample: Sample, sampling_params: Mapping[str, Any]) -> Sample:
    """Generate (or continue) `sample`'s response; `sampling_params` is SGLang's dict (this call's copy).

    Raises:
        ContractError: the sample is already finished (COMPLETED / TRUNCATED / FAILED).
    """
    if sample.status not in _CONTINUABLE:
        raise ContractError(
            f"sample {sample.index} has status {sample.status}; only pending or aborted (partial) samples generate."
        )
    runtime = RolloutRuntime.for_args(args)
    if not sample.tokens:
        sample.tokens = prompt_token_ids(args, runtime.tokenizer, sample)
    params = dict(sampling_params)
    params["max_new_tokens"] = int(params["max_new_tokens"]) - sample.response_length
    seed = sample_sampling_seed(args, sample.index)
    if seed is not None:
        params.setdefault("sampling_seed", seed)
    if params["max_new_tokens"] <= 0:
        sample.status = Status.TRUNCATED
        return sample
    output = await runtime.client.generate(sample.tokens, params, return_logprob=True)
    apply_output(sample, output)
    return sample
