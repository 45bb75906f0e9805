"""A local, deterministic search engine over the tiny corpus bundled with the example (no network).

Documents are scored by TF-IDF over lower-cased alphanumeric words; ties go to the earlier document, so the
same query always returns the same passages. It stands in for the retrieval server of the original
Search-R1 setup; swap `LocalSearch.search` for an HTTP call to use a real one.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

CORPUS_PATH = Path(__file__).with_name("corpus.jsonl")
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """Lower-cased alphanumeric words."""
    return _WORD.findall(text.lower())


class LocalSearch:
    """TF-IDF retrieval over `{id, title, text}` documents."""

    def __init__(self, documents: list[dict[str, Any]]) -> None:
        if not documents:
            raise ValueError("LocalSearch needs at least one document")
        self.documents = documents
        self._counts = [Counter(words(d["title"] + " " + d["text"])) for d in documents]
        df = Counter(w for counts in self._counts for w in counts)
        n = len(documents)
        self._idf = {w: math.log((n + 1) / (c + 1)) + 1.0 for w, c in df.items()}

    @classmethod
    def from_jsonl(cls, path: str | Path = CORPUS_PATH) -> LocalSearch:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        return cls([json.loads(line) for line in lines if line.strip()])

    def search(self, query: str, top_k: int = 2) -> list[dict[str, Any]]:
        """The `top_k` best documents for `query` (documents with no shared word are never returned)."""
        terms = words(query)
        scored = []
        for position, counts in enumerate(self._counts):
            score = sum(counts[t] * self._idf.get(t, 0.0) for t in terms)
            if score > 0:
                scored.append((-score, position))
        return [self.documents[position] for _, position in sorted(scored)[:top_k]]


@functools.cache
def default_search() -> LocalSearch:
    """The bundled corpus, loaded once."""
    return LocalSearch.from_jsonl()


def format_observation(documents: list[dict[str, Any]]) -> str:
    """The tool answer appended to the conversation (never trained on)."""
    if not documents:
        body = "No results."
    else:
        body = "\n".join(f"Doc {i + 1} (Title: {d['title']}) {d['text']}" for i, d in enumerate(documents))
    return f"\n\n<information>{body}</information>\n\n"
