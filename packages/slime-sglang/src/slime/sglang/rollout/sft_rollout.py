"""`sft_rollout`: the SFT "rollout" (slime's `slime.rollout.sft_rollout.generate_rollout`), no engines involved.

Each prompt of the data buffer must be a chat conversation (a message list, tools in `metadata["tools"]`).
It becomes one sample: `tokens` = the whole conversation from the tokenizer's chat template,
`response_length` = from the first trainable (assistant) token to the end, `loss_mask` = 1 on assistant
tokens and 0 elsewhere (`chat_loss_mask`), reward 0.0, status COMPLETED. Requires
`--n-samples-per-prompt 1`. Use with `--loss-type sft_loss --disable-compute-advantages-and-returns`.
It fits `slime.types.RolloutFn`; evaluation is not an SFT rollout's job and raises.
"""

from __future__ import annotations

import statistics
from typing import Any

from slime.sglang.rollout.chat_loss_mask import chat_tokens_and_loss_mask
from slime.sglang.rollout.prompt import chat_template_kwargs
from slime.sglang.rollout.runtime import load_tokenizer
from slime.sglang.rollout.train_rollout import RolloutGroups
from slime.types import ConfigError, DataError, Sample, Status


def sft_sample(tokenizer: Any, sample: Sample, template_kwargs: dict[str, Any] | None = None) -> Sample:
    """Fill `sample` (a chat conversation) with tokens, response length and loss mask in place."""
    if not isinstance(sample.prompt, list):
        raise DataError(
            f"sample {sample.index}: the SFT rollout needs a chat message list as the prompt, got "
            f"{type(sample.prompt).__name__}; store conversations under --input-key."
        )
    ids, mask = chat_tokens_and_loss_mask(
        tokenizer, sample.prompt, tools=(sample.metadata or {}).get("tools"), template_kwargs=template_kwargs
    )
    if 1 not in mask:
        raise DataError(f"sample {sample.index}: the conversation has no trainable assistant turn.")
    first = mask.index(1)
    sample.tokens = ids
    sample.response_length = len(ids) - first
    sample.loss_mask = mask[first:]
    sample.rollout_log_probs = None
    sample.response = tokenizer.decode(ids[first:])
    sample.reward = 0.0
    sample.status = Status.COMPLETED
    sample.validate()
    return sample


def sft_rollout(args: Any, rollout_id: int, data_buffer: Any, evaluation: bool = False) -> RolloutGroups:
    """`rollout_batch_size` SFT samples (groups of one) from the data buffer."""
    if evaluation:
        raise ConfigError("the SFT rollout does not evaluate; set --eval-function-path to an evaluation rollout.")
    if getattr(args, "n_samples_per_prompt", 1) != 1:
        raise ConfigError(f"--n-samples-per-prompt is {args.n_samples_per_prompt}; the SFT rollout needs 1.")
    if not getattr(args, "hf_checkpoint", None):
        raise ConfigError("--hf-checkpoint is not set; the SFT rollout needs its tokenizer and chat template.")
    tokenizer = load_tokenizer(args.hf_checkpoint)
    groups = data_buffer.get_samples(args.rollout_batch_size)
    for sample in (s for g in groups for s in g):
        sft_sample(tokenizer, sample, chat_template_kwargs(args, sample))
    samples = [s for g in groups for s in g]
    lengths = [s.response_length for s in samples] or [0]
    metrics = {
        "rollout/num_samples": float(len(samples)),
        "rollout/response_len/mean": statistics.fmean(lengths),
        "rollout/trainable_tokens": float(sum(s.effective_response_length for s in samples)),
    }
    return RolloutGroups([list(g) for g in groups], metrics)
