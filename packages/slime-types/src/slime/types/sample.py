"""`Sample`: one prompt + response trajectory as slime users know it, and its `Status`.

`Sample` is mutable on purpose: user plugins (custom generate / reward functions from slime's docs) write
`sample.tokens`, `sample.loss_mask`, `sample.metadata[...]` directly. Its invariants are checked by
`Sample.validate()` at layer boundaries, not on every assignment. It holds no tensors and no live handles.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from slime.types.errors import ContractError


class Status(StrEnum):
    """Lifecycle of a sample. `PENDING` until generated; then one terminal value."""

    PENDING = "pending"
    COMPLETED = "completed"
    TRUNCATED = "truncated"
    ABORTED = "aborted"
    FAILED = "failed"

    @property
    def is_finished(self) -> bool:
        """True when generation ended normally (stop or length), so the sample can be trained on."""
        return self in (Status.COMPLETED, Status.TRUNCATED)

    @classmethod
    def from_finish_reason(cls, finish_reason: str) -> Status:
        """Map SGLang's `meta_info.finish_reason.type` (stop / length / abort) to a status."""
        mapping = {"stop": cls.COMPLETED, "length": cls.TRUNCATED, "abort": cls.ABORTED}
        if finish_reason not in mapping:
            raise ContractError(
                f"finish_reason {finish_reason!r} is not one of {sorted(mapping)}; "
                "the engine answered something the SGLang protocol does not define."
            )
        return mapping[finish_reason]


Reward = float | dict[str, float]
Prompt = str | list[dict[str, Any]]


@dataclasses.dataclass(slots=True)
class Sample:
    """One trajectory: prompt tokens followed by `response_length` response tokens.

    `tokens` holds prompt + response ids. `loss_mask` and `rollout_log_probs` describe the response part
    only and have exactly `response_length` entries once generation ran (`None` means "all trainable" for
    the mask and "not recorded" for the log-probs). Tool / environment tokens appended in multi-turn
    rollouts carry mask 0 and log-prob 0.0.
    """

    Status = Status  # slime users write `Sample.Status.COMPLETED`

    index: int | None = None
    group_index: int | None = None
    rollout_id: int | None = None
    prompt: Prompt = ""
    tokens: list[int] = dataclasses.field(default_factory=list)
    response: str = ""
    response_length: int = 0
    label: Any = None
    reward: Reward | None = None
    loss_mask: list[int] | None = None
    rollout_log_probs: list[float] | None = None
    teacher_log_probs: list[float] | None = None
    status: Status = Status.PENDING
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    train_metadata: dict[str, Any] | None = None
    weight_versions: list[str] = dataclasses.field(default_factory=list)
    remove_sample: bool = False
    session_id: str | None = None
    generate_function_path: str | None = None
    custom_rm_path: str | None = None
    non_generation_time: float = 0.0

    @property
    def prompt_length(self) -> int:
        """Number of prompt tokens (everything in `tokens` before the response)."""
        return len(self.tokens) - self.response_length

    @property
    def effective_response_length(self) -> int:
        """Number of trainable response tokens (the sum of the loss mask)."""
        return self.response_length if self.loss_mask is None else sum(self.loss_mask)

    @property
    def response_tokens(self) -> list[int]:
        """The response part of `tokens`."""
        return self.tokens[len(self.tokens) - self.response_length :]

    def get_reward_value(self, reward_key: str | None = None) -> float:
        """The scalar reward; with a dict reward, `reward_key` selects the entry (slime's `--reward-key`)."""
        if self.reward is None:
            raise ContractError(f"sample {self.index} has no reward (status {self.status}); score it before training.")
        if isinstance(self.reward, Mapping):
            if reward_key is None or reward_key not in self.reward:
                raise ContractError(
                    f"sample {self.index} has a dict reward with keys {sorted(self.reward)}; "
                    f"--reward-key is {reward_key!r}. Set --reward-key to one of those keys."
                )
            return float(self.reward[reward_key])
        return float(self.reward)

    def append_response(
        self,
        token_ids: Sequence[int],
        log_probs: Sequence[float] | None = None,
        *,
        is_trainable: bool = True,
        text: str = "",
        weight_version: str | None = None,
    ) -> None:
        """Append one turn to the response, keeping mask and log-probs aligned token by token.

        Model tokens (`is_trainable=True`) get mask 1 and need their log-probs when log-probs are being
        recorded; tool / environment tokens get mask 0 and log-prob 0.0.

        Raises:
            ContractError: log-probs of the wrong length, or missing for trainable tokens while earlier
                turns recorded them.
        """
        num_new = len(token_ids)
        if log_probs is not None and len(log_probs) != num_new:
            raise ContractError(f"append_response got {num_new} tokens but {len(log_probs)} log-probs.")
        if self.loss_mask is None:
            self.loss_mask = [1] * self.response_length
        recording = self.rollout_log_probs is not None or (self.response_length == 0 and log_probs is not None)
        if recording and self.rollout_log_probs is None:
            self.rollout_log_probs = []
        if recording:
            if is_trainable and log_probs is None:
                raise ContractError("trainable tokens need their log-probs once a sample records rollout log-probs.")
            new_lp = list(log_probs) if is_trainable and log_probs is not None else [0.0] * num_new
            self.rollout_log_probs.extend(float(x) for x in new_lp)  # type: ignore[union-attr]  # set just above
        self.tokens.extend(int(t) for t in token_ids)
        self.loss_mask.extend([1 if is_trainable else 0] * num_new)
        self.response_length += num_new
        self.response += text
        if weight_version is not None:
            self.weight_versions.append(weight_version)

    def validate(self) -> None:
        """Check the alignment invariants; raise `ContractError` naming the field and both lengths."""
        if not 0 <= self.response_length <= len(self.tokens):
            raise ContractError(
                f"sample {self.index}: response_length {self.response_length} is outside [0, len(tokens)="
                f"{len(self.tokens)}]. Set response_length to the number of response tokens at the end of tokens."
            )
        for name in ("loss_mask", "rollout_log_probs", "teacher_log_probs"):
            value = getattr(self, name)
            if value is not None and len(value) != self.response_length:
                raise ContractError(
                    f"sample {self.index}: len({name})={len(value)} but response_length={self.response_length}; "
                    f"{name} must have one entry per response token (tool tokens included, with mask 0)."
                )
        if self.loss_mask is not None and any(m not in (0, 1) for m in self.loss_mask):
            raise ContractError(f"sample {self.index}: loss_mask entries must be 0 or 1.")

    def reset_for_retry(self) -> None:
        """Drop the response so the sample can be generated again from its prompt."""
        prompt_tokens = self.tokens[: self.prompt_length]
        self.tokens = prompt_tokens
        self.response, self.response_length = "", 0
        self.loss_mask = self.rollout_log_probs = None
        self.reward, self.status = None, Status.PENDING
        self.weight_versions = []

    def clone(self) -> Sample:
        """A deep copy (used to fan one prompt out into `n_samples_per_prompt` samples)."""
        return copy.deepcopy(self)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; `status` is stored as its string value."""
        out = {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self)}
        out["status"] = self.status.value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Sample:
        """Inverse of `to_dict`. Unknown keys are kept in `metadata["extra_fields"]`, never dropped."""
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: copy.deepcopy(v) for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names}
        if "status" in known:
            known["status"] = Status(known["status"])
        sample = cls(**known)
        if extra:
            sample.metadata.setdefault("extra_fields", {}).update(extra)
        return sample
