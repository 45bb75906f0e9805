"""Draw a metric curve (the demo's reward curve) to a PNG with matplotlib's Agg backend."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


def plot_curve(points: Sequence[tuple[int, float]], path: str | os.PathLike[str], *, title: str, ylabel: str) -> Path:
    """Plot `(step, value)` points to `path` (created with its parent) and return the path."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    steps = [p[0] for p in points]
    values = [p[1] for p in points]
    ax.plot(steps, values, marker="o", linewidth=1.5)
    ax.set_xlabel("rollout")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
