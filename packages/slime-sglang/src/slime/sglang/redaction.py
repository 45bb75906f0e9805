"""Keep secrets out of what we print: the values of secret-bearing flags are redacted from echoed commands and logs.

A flag is secret when its name ends in `api-key(s)`, `token`, `secret`, `password` or `passwd` (SGLang's and the
router's `--api-key`, `--admin-api-key`, `--control-plane-api-keys`, an `--hf-token`, ...); `--max-total-tokens`
and friends are not. Its value is every token up to the next `--flag` (so `nargs="*"` lists are covered), or the
part after `=`. `redact_text` replaces known secret values anywhere in a text (a log tail quoted in an error). This
module only rewrites strings; it does not stop a server from logging its own arguments.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

MASK = "***"
_SECRET_NAME = re.compile(r"(api[-_]keys?|(^|[-_])token|secret|password|passwd)$", re.IGNORECASE)


def is_secret_flag(token: str) -> bool:
    """True when `token` (`--name` or `--name=value`) names a flag whose value must not be shown."""
    if not token.startswith("--"):
        return False
    return _SECRET_NAME.search(token[2:].partition("=")[0]) is not None


def secret_values(argv: Sequence[str]) -> list[str]:
    """The values given to secret flags in `argv`, in order."""
    values: list[str] = []
    in_secret = False
    for token in argv:
        if token.startswith("--"):
            in_secret = is_secret_flag(token)
            name, eq, value = token.partition("=")
            if in_secret and eq:
                values.append(value)
                in_secret = False
        elif in_secret:
            values.append(token)
    return [v for v in values if v]


def redact_argv(argv: Sequence[str]) -> list[str]:
    """`argv` with every secret flag's value replaced by `***` (the flag names stay, so the command reads right)."""
    out: list[str] = []
    in_secret = False
    for token in argv:
        if token.startswith("--"):
            in_secret = is_secret_flag(token)
            name, eq, _ = token.partition("=")
            if in_secret and eq:
                out.append(f"{name}={MASK}")
                in_secret = False
                continue
            out.append(token)
        else:
            out.append(MASK if in_secret else token)
    return out


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of each secret value replaced by `***` (longest first)."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text
