"""Random rollout batches for the slime.megatron tests (plain Python; used by the test process and the workers).

The tiny models are random, so any tokens will do; what matters is that every layout case appears: several
samples per micro-batch, prompts of different lengths, masked (tool) tokens inside a response, whole groups.
"""

from __future__ import annotations

import random

from slime.types import RolloutBatch, TrainSample


def random_batch(
    num_samples: int = 8,
    *,
    seed: int = 0,
    group_size: int = 4,
    prompt_len: tuple[int, int] = (2, 9),
    response_len: tuple[int, int] = (2, 12),
    vocab: int = 256,
    rollout_id: int = 0,
    with_rollout_log_probs: bool = False,
) -> RolloutBatch:
    """A `RolloutBatch` of random samples; every third sample masks the middle of its response."""
    rng = random.Random(seed)
    samples = []
    for i in range(num_samples):
        p, r = rng.randint(*prompt_len), rng.randint(*response_len)
        mask = [1] * r
        if i % 3 == 2 and r >= 3:
            mask[1 : r - 1] = [0] * (r - 2)
        samples.append(
            TrainSample(
                tokens=tuple(rng.randrange(vocab) for _ in range(p + r)),
                response_length=r,
                loss_mask=tuple(mask),
                reward=float(rng.random() < 0.5) + 0.1 * (i % group_size),
                group_index=i // group_size,
                index=i,
                rollout_log_probs=tuple(-rng.random() * 5 for _ in range(r)) if with_rollout_log_probs else None,
            )
        )
    return RolloutBatch(rollout_id=rollout_id, samples=tuple(samples), n_samples_per_prompt=group_size)
