"""The prompt data, checked against the model before any engine starts: rows decode, templates render, prompts fit.

`checked_data_source(args)` builds slime.buffer's `RolloutDataSource` from the flags (a row that does not decode or
misses / mistypes a key raises `DataError` naming the file, line, key and fix, unless `--skip-bad-rows`), then
renders every prompt the way the rollout will (the tokenizer's chat template with the row's tools and
`--apply-chat-template-kwargs`) and tokenizes it. A prompt whose template raises, or that is longer than the context
(`--rollout-max-prompt-len`, derived from `--rollout-max-context-len`, else the model's `max_position_embeddings`
- 1, SGLang's limit), is a bad row too: one `DataError` naming the prompt, the length, the limit and the fix, or
with `--skip-bad-rows` it is left out and counted in `dataset.skipped` with the rows slime.buffer skipped. Nothing
is dropped silently. It reads files and the tokenizer; it starts nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from slime.buffer import RolloutDataSource
from slime.buffer.prompt_data import BadRow, PromptDataset
from slime.types import BufferFilterFn, ConfigError, DataError, Sample, resolve

logger = logging.getLogger(__name__)
_PREVIEW = 60


def load_tokenizer(args: Any) -> Any:
    """`--hf-checkpoint`'s tokenizer (cached), a loading failure as a `ConfigError` naming the flag."""
    from slime.sglang.rollout import load_tokenizer as load

    try:
        return load(args.hf_checkpoint)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(
            f"--hf-checkpoint {args.hf_checkpoint!r}: its tokenizer does not load ({type(exc).__name__}: {exc}). "
            "Fix: point --hf-checkpoint at an HF folder with tokenizer files."
        ) from exc


def prompt_limit(args: Any) -> tuple[int | None, str]:
    """The longest prompt (in tokens) the run accepts, and where that limit comes from."""
    if getattr(args, "rollout_max_prompt_len", None) is not None:
        return int(args.rollout_max_prompt_len), "--rollout-max-prompt-len"
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(args.hf_checkpoint, trust_remote_code=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"--hf-checkpoint {args.hf_checkpoint!r}: config.json does not load ({exc}).") from exc
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    positions = getattr(text, "max_position_embeddings", None)
    if not isinstance(positions, int) or positions < 2:
        return None, "the model config has no max_position_embeddings"
    return positions - 1, f"the model's max_position_embeddings ({positions}) - 1"


def _preview(sample: Sample) -> str:
    text = sample.prompt if isinstance(sample.prompt, str) else str(sample.prompt[-1].get("content", ""))
    return text[:_PREVIEW] + ("..." if len(text) > _PREVIEW else "")


def _problem(args: Any, tokenizer: Any, sample: Sample, limit: tuple[int, str] | None) -> tuple[str, str] | None:
    """None when the prompt is usable, else (problem, fix)."""
    from slime.sglang.rollout import prompt_token_ids

    try:
        length = len(prompt_token_ids(args, tokenizer, sample.clone()))  # a clone: prototypes keep their messages
    except ConfigError:
        raise  # no chat template at all, or bad --apply-chat-template-kwargs: a config problem, not a row's
    except Exception as exc:  # a template may raise anything (jinja's raise_exception, a missing key, ...)
        return (
            f"the chat template of --hf-checkpoint fails on it ({type(exc).__name__}: {exc})",
            "fix the row's messages (roles, order) or the tokenizer's chat_template, or drop --apply-chat-template",
        )
    if limit is not None and length > limit[0]:
        return (
            f"the prompt is {length} tokens, longer than the context limit {limit[0]} ({limit[1]})",
            "shorten or drop the row, or raise --rollout-max-prompt-len / --rollout-max-context-len if the model "
            "allows it",
        )
    return None


def check_prompts(args: Any, dataset: PromptDataset, tokenizer: Any) -> tuple[list[Sample], list[BadRow]]:
    """Render and measure every prompt; returns (usable prototypes, skipped rows), raising on the first bad one
    unless `--skip-bad-rows`. A skipped row's `line` is its prompt number (1-based, among the usable rows)."""
    limit_value, limit_source = prompt_limit(args)
    limit = None if limit_value is None else (limit_value, limit_source)
    kept: list[Sample] = []
    skipped: list[BadRow] = []
    for number, sample in enumerate(dataset, start=1):
        problem = _problem(args, tokenizer, sample, limit)
        if problem is None:
            kept.append(sample)
            continue
        what = f"{problem[0]}; prompt {_preview(sample)!r}"
        if not getattr(args, "skip_bad_rows", False):
            raise DataError(
                f"{dataset.source} prompt #{number}, key {args.input_key!r}: {what}. Fix: {problem[1]}; or pass "
                "--skip-bad-rows to skip and count such rows."
            )
        skipped.append(BadRow(dataset.source, number, args.input_key, what, problem[1]))
    return kept, skipped


def _rebuilt(args: Any, source: RolloutDataSource, dataset: PromptDataset) -> RolloutDataSource:
    filter_path = getattr(args, "buffer_filter_path", None)
    buffer_filter = resolve(filter_path, BufferFilterFn, flag="--buffer-filter-path") if filter_path else None
    return RolloutDataSource(dataset, n_samples_per_prompt=source.n_samples_per_prompt, shuffle=source.shuffle,
                             seed=source.seed, buffer_filter=buffer_filter, args=args)  # fmt: skip


def checked_data_source(args: Any) -> RolloutDataSource:
    """The run's data source over checked prompts (see the module docstring)."""
    source = RolloutDataSource.from_args(args)
    dataset = source.dataset
    if not isinstance(dataset, PromptDataset) or not getattr(args, "hf_checkpoint", None):
        return source
    kept, skipped = check_prompts(args, dataset, load_tokenizer(args))
    if skipped:
        logger.warning("%s: skipped %d prompts (--skip-bad-rows); first: %s", dataset.source, len(skipped),
                       skipped[0].message())  # fmt: skip
    if not skipped:
        return source
    checked = PromptDataset(kept, source=dataset.source, skipped=(*dataset.skipped, *skipped))
    return _rebuilt(args, source, checked)


def skipped_rows(source: RolloutDataSource) -> int:
    """Rows of the prompt data left out under `--skip-bad-rows` (0 without a dataset)."""
    return len(getattr(source.dataset, "skipped", ()))
