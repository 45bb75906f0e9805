"""A hub-free ChatML tokenizer for tests: byte-level BPE trained in-process, at most 256 ids.

It only builds the tokenizer files; it does not build models (see `slime_testkit.models`).
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # transformers is imported lazily: it is slow to import and only needed when building
    from transformers import PreTrainedTokenizerBase

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
PAD = "<|pad|>"
SPECIAL_TOKENS: tuple[str, ...] = (ENDOFTEXT, IM_START, IM_END, PAD)
"""Special tokens, in id order: the trainer gives them ids 0..3."""

BOS_TOKEN_ID = 0
"""`<|endoftext|>`: declared as bos (never added automatically), as in Qwen's configs."""
IM_START_TOKEN_ID = 1
EOS_TOKEN_ID = 2
"""`<|im_end|>`: the end of every ChatML turn, hence the eos."""
PAD_TOKEN_ID = 3

VOCAB_SIZE = 256
"""Total ids, special tokens included; equal to the tiny models' default `vocab_size`."""

# Bytes that never occur in valid UTF-8. Dropping them from the byte alphabet leaves room for the
# special tokens and a few merges inside 256 ids, while every Python `str` still encodes losslessly.
_NON_UTF8_BYTES = frozenset({0xC0, 0xC1, *range(0xF5, 0x100)})

CHAT_TEMPLATE = """\
{%- if tools %}
{{- '<|im_start|>system\\n' }}
{%- if messages and messages[0].role == 'system' %}
{{- messages[0].content + '\\n\\n' }}
{%- endif %}
{{- '# Tools\\n\\n<tools>' }}
{%- for tool in tools %}
{{- '\\n' + (tool | tojson) }}
{%- endfor %}
{{- '\\n</tools><|im_end|>\\n' }}
{%- elif messages and messages[0].role == 'system' %}
{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
{%- if message.role == 'system' %}
{%- if not loop.first %}
{{- raise_exception('a system message is only allowed as the first message') }}
{%- endif %}
{%- elif message.role == 'user' or message.role == 'tool' %}
{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
{%- elif message.role == 'assistant' %}
{{- '<|im_start|>assistant\\n' }}
{%- generation %}
{%- if message.content is defined and message.content is not none %}
{{- message.content }}
{%- endif %}
{%- if message.tool_calls is defined and message.tool_calls %}
{%- for tool_call in message.tool_calls %}
{%- if tool_call.function is defined %}
{%- set tool_call = tool_call.function %}
{%- endif %}
{%- if tool_call.arguments is string %}
{%- set arguments = tool_call.arguments %}
{%- else %}
{%- set arguments = tool_call.arguments | tojson %}
{%- endif %}
{{- '\\n<tool_call>\\n{"name": "' + tool_call.name + '", "arguments": ' + arguments + '}\\n</tool_call>' }}
{%- endfor %}
{%- endif %}
{{- '<|im_end|>' }}
{%- endgeneration %}
{{- '\\n' }}
{%- else %}
{{- raise_exception('unknown role: ' + message.role) }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""
"""ChatML with system/user/assistant/tool roles and `add_generation_prompt`.

Each assistant turn's content and its `<|im_end|>` sit inside `{% generation %}`, so
`apply_chat_template(..., return_assistant_tokens_mask=True, return_dict=True)` marks exactly the tokens a
policy generates. The newline after `<|im_end|>` belongs to the template, not to the response.
"""


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable-character table, the alphabet of the `ByteLevel` pre-tokenizer."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1), *range(ord("\xae"), 0x100)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(0x100):
        if b not in table:
            table[b] = chr(0x100 + extra)
            extra += 1
    return table


def training_corpus() -> list[str]:
    """The fixed corpus the BPE merges are learnt from: ASCII, English, arithmetic and ChatML text."""
    english = [
        "The quick brown fox jumps over the lazy dog.",
        "A policy is trained with reinforcement learning from its own samples.",
        "Answer the question and put the final answer in a box.",
        "What is the sum of the numbers below? Think step by step.",
        "She sells sea shells by the sea shore; the shells she sells are sea shells.",
        "It was the best of times, it was the worst of times.",
        "Hello, world! How are you today? I am fine, thank you.",
        "The reward is one if the answer is correct and zero otherwise.",
    ]
    arithmetic = [f"{a} + {b} = {a + b}" for a in range(0, 30, 3) for b in range(0, 30, 7)]
    arithmetic += [f"{a} * {b} = {a * b}" for a in range(2, 12) for b in range(2, 12, 3)]
    arithmetic += [f"{a} - {b} = {a - b}" for a in range(10, 100, 9) for b in range(1, 10, 4)]
    chat = [
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n",
        "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n2 + 3 = 5<|im_end|>\n",
        '<tool_call>\n{"name": "calculator", "arguments": {"expression": "7 * 6"}}\n</tool_call>',
    ]
    return [string.printable, string.digits * 4, *english, *arithmetic, *chat]


def build_tokenizer(out_dir: str | Path) -> Path:
    """Train the tiny tokenizer and save it with `save_pretrained` into `out_dir`.

    The result loads with `AutoTokenizer.from_pretrained(out_dir)`. Ids: `<|endoftext|>` 0 (bos),
    `<|im_start|>` 1, `<|im_end|>` 2 (eos), `<|pad|>` 3; every id is below `VOCAB_SIZE` (256). Any Python
    string round-trips exactly through encode/decode. Two builds write byte-identical `tokenizer.json`.

    Args:
        out_dir: the folder to write into; created if missing. Existing tokenizer files are overwritten.

    Returns:
        `out_dir` as a `Path`.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    byte_chars = _bytes_to_unicode()
    alphabet = [byte_chars[b] for b in range(0x100) if b not in _NON_UTF8_BYTES]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    # An explicit post-processor keeps transformers from installing its own; offsets stay untrimmed so
    # the assistant-token mask of `apply_chat_template` lines up with the rendered characters.
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=alphabet,
        limit_alphabet=len(alphabet),
        show_progress=False,
    )
    backend.train_from_iterator(training_corpus(), trainer)

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=ENDOFTEXT,
        eos_token=IM_END,
        pad_token=PAD,
        additional_special_tokens=[IM_START],
        add_bos_token=False,
        add_eos_token=False,
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    _check_ids(tokenizer)
    tokenizer.save_pretrained(out)
    return out


def _check_ids(tokenizer: PreTrainedTokenizerBase) -> None:
    """Fail loudly if a tokenizers release ever changes how the trainer numbers special tokens."""
    expected = dict(zip(SPECIAL_TOKENS, range(len(SPECIAL_TOKENS)), strict=True))
    actual = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    if actual != expected or len(tokenizer) > VOCAB_SIZE:
        raise RuntimeError(
            f"tiny tokenizer ids changed: special ids {actual} (expected {expected}), {len(tokenizer)} tokens "
            f"(at most {VOCAB_SIZE}); update the constants of slime_testkit.tokenizer"
        )
