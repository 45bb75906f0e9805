"""Naive references: one Python loop per formula, float64, samples given as lists of per-token lists."""

from __future__ import annotations

import math

# ---------------------------------------------------------------- log-probs and entropy


def log_softmax_row(row: list[float], temperature: float) -> list[float]:
    z = [x / temperature for x in row]
    top = max(z)
    lse = top + math.log(sum(math.exp(v - top) for v in z))
    return [v - lse for v in z]


def log_prob(row: list[float], target: int, temperature: float) -> float:
    return log_softmax_row(row, temperature)[target]


def entropy(row: list[float], temperature: float) -> float:
    return -sum(math.exp(lp) * lp for lp in log_softmax_row(row, temperature))


# ---------------------------------------------------------------- KL estimators


def kl(logp: float, logp_ref: float, kind: str) -> float:
    d = logp - logp_ref
    if kind == "k1":
        return d
    if kind == "k2":
        return d * d / 2
    k3 = math.exp(-d) - 1 + d
    if kind == "k3":
        return k3
    assert kind == "low_var_kl"
    return min(10.0, max(-10.0, k3))


# ---------------------------------------------------------------- group baselines


def groups_of(group_ids: list[int]) -> dict[int, list[int]]:
    members: dict[int, list[int]] = {}
    for i, g in enumerate(group_ids):
        members.setdefault(g, []).append(i)
    return members


def group_scores(rewards: list[float], group_ids: list[int], kind: str) -> list[float]:
    """kind: raw | mean | grpo | rloo."""
    out = [0.0] * len(rewards)
    for idx in groups_of(group_ids).values():
        vals = [rewards[i] for i in idx]
        n = len(vals)
        mean = sum(vals) / n
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else 0.0
        for i in idx:
            if kind == "raw":
                out[i] = rewards[i]
            elif kind == "mean":
                out[i] = rewards[i] - mean
            elif kind == "grpo":
                out[i] = (rewards[i] - mean) / (std + 1e-6)
            else:
                assert kind == "rloo"
                others = [rewards[j] for j in idx if j != i]
                out[i] = rewards[i] - sum(others) / len(others) if others else 0.0
    return out


# ---------------------------------------------------------------- returns, GAE


def discounted_returns(rewards: list[float], gamma: float) -> list[float]:
    out = []
    for t in range(len(rewards)):
        out.append(sum(gamma ** (k - t) * rewards[k] for k in range(t, len(rewards))))
    return out


def gae(rewards: list[float], values: list[float], gamma: float, lambd: float) -> tuple[list[float], list[float]]:
    n = len(rewards)
    deltas = [rewards[t] + gamma * (values[t + 1] if t + 1 < n else 0.0) - values[t] for t in range(n)]
    adv = [sum((gamma * lambd) ** (k - t) * deltas[k] for k in range(t, n)) for t in range(n)]
    return adv, [a + v for a, v in zip(adv, values, strict=True)]


def whiten(values: list[float], mask: list[int]) -> list[float]:
    kept = [v for v, m in zip(values, mask, strict=True) if m]
    n = len(kept)
    mean = sum(kept) / n if n else 0.0
    var = sum((v - mean) ** 2 for v in kept) / (n - 1) if n > 1 else (sum((v - mean) ** 2 for v in kept) if n else 0.0)
    return [(v - mean) / math.sqrt(var + 1e-8) for v in values]


# ---------------------------------------------------------------- policy losses (per token)


def ppo_token(log_ratio: float, adv: float, eps: float, eps_high: float, c: float | None) -> tuple[float, float]:
    ratio = math.exp(log_ratio)
    unclipped = -ratio * adv
    clipped = -min(max(ratio, 1 - eps), 1 + eps_high) * adv
    loss = max(unclipped, clipped)
    if c is not None and adv < 0:
        loss = min(loss, -c * adv)
    return loss, 1.0 if clipped > unclipped else 0.0


def cispo_token(logp: float, old: float, adv: float, eps: float, eps_high: float) -> tuple[float, float]:
    ratio = math.exp(logp - old)
    weight = min(max(ratio, 1 - eps), 1 + eps_high)
    return -weight * adv * logp, 1.0 if weight != ratio else 0.0


def value_token(v: float, v_old: float, ret: float, clip: float) -> tuple[float, float]:
    v_clip = v_old + min(max(v - v_old, -clip), clip)
    a, b = (v - ret) ** 2, (v_clip - ret) ** 2
    return max(a, b), 1.0 if b > a else 0.0


def tis_token(old: float, rollout: float, kind: str, low: float, high: float) -> tuple[float, int, float]:
    """(weight, keep, is_clipped) for truncate | icepop | reject."""
    ratio = math.exp(old - rollout)
    inside = low <= ratio <= high
    if kind == "truncate":
        w = min(max(ratio, low), high)
        return w, 1, 1.0 if w != ratio else 0.0
    if kind == "icepop":
        return (ratio if inside else 0.0), 1, 0.0 if inside else 1.0
    return 1.0, 1 if inside else 0, 0.0 if inside else 1.0


# ---------------------------------------------------------------- reductions


def sum_of_sample_mean(values: list[list[float]], masks: list[list[int]], denominators: list[float]) -> float:
    total = 0.0
    for vals, mask, den in zip(values, masks, denominators, strict=True):
        total += sum(v * m for v, m in zip(vals, mask, strict=True)) / max(1.0, den)
    return total


def sum_of_tokens(values: list[list[float]], masks: list[list[int]]) -> float:
    return sum(v * m for vals, mask in zip(values, masks, strict=True) for v, m in zip(vals, mask, strict=True))


# ---------------------------------------------------------------- whole-batch advantages (inventory 5.1)

SCORE_KIND = {
    "grpo": "grpo", "gspo": "grpo", "cispo": "grpo", "dr_grpo": "mean", "rloo": "rloo",
    "reinforce_plus_plus": "raw", "reinforce_plus_plus_baseline": "mean", "ppo": "raw",
}  # fmt: skip


def advantages(cfg, batch) -> tuple[list[list[float]], list[list[float]]]:
    """Per-sample lists of (advantages, returns) for a LossConfig-like `cfg` and a reference `Batch`."""
    est = cfg.advantage_estimator
    kind = SCORE_KIND[est]
    if cfg.disable_rewards_normalization:
        kind = "raw"
    elif cfg.disable_grpo_std_normalization and kind == "grpo":
        kind = "mean"
    scores = group_scores(batch.rewards, batch.group_ids, kind)
    use_kl = cfg.kl_coef != 0 and est in ("reinforce_plus_plus", "reinforce_plus_plus_baseline", "ppo")
    advs, rets = [], []
    for i, mask in enumerate(batch.masks):
        n = len(mask)
        penalty = [
            cfg.kl_coef * kl(batch.old_log_probs[i][t], batch.ref_log_probs[i][t], cfg.kl_loss_type) * mask[t]
            if use_kl else 0.0
            for t in range(n)
        ]  # fmt: skip
        if est == "reinforce_plus_plus":
            token_rewards = [-p for p in penalty]
            unmasked = [t for t in range(n) if mask[t]]
            if unmasked:
                token_rewards[unmasked[-1]] += scores[i]
            a = discounted_returns(token_rewards, cfg.gamma)
            r = list(a)
        elif est == "reinforce_plus_plus_baseline":
            a = [scores[i] - p for p in penalty]
            r = list(a)
        elif est == "ppo":
            token_rewards = [-p for p in penalty]
            if n:
                token_rewards[-1] += scores[i]
            a, r = gae(token_rewards, batch.values[i], cfg.gamma, cfg.lambd)
        else:
            a = [scores[i]] * n
            r = list(a)
        advs.append(a)
        rets.append(r)
    if cfg.normalize_advantages:
        flat = whiten([x for a in advs for x in a], [m for mask in batch.masks for m in mask])
        it = iter(flat)
        advs = [[next(it) for _ in a] for a in advs]
    return advs, rets


# ---------------------------------------------------------------- whole micro-batch loss (inventory 5.2-5.4)


def _reduce(values, masks, cfg, denominators, num_tokens, num_samples) -> float:
    if cfg.calculate_per_token_loss:
        return sum_of_tokens(values, masks) / max(1.0, num_tokens)
    return sum_of_sample_mean(values, masks, denominators) / max(1.0, num_samples)


def _pg_token(cfg, i, t, batch, seq_log_ratio) -> tuple[float, float]:
    lp, old, adv = batch.log_probs[i][t], batch.old_log_probs[i][t], batch.advantages[i][t]
    high = cfg.eps_clip if cfg.eps_clip_high is None else cfg.eps_clip_high
    if cfg.advantage_estimator == "cispo":
        return cispo_token(lp, old, adv, cfg.eps_clip, high)
    log_ratio = seq_log_ratio if cfg.advantage_estimator == "gspo" else lp - old
    return ppo_token(log_ratio, adv, cfg.eps_clip, high, cfg.eps_clip_c)


def loss(cfg, batch, entropy, denominators, num_tokens, num_samples) -> dict[str, float]:
    """Loss and metrics of `compute_loss` for one micro-batch (`batch`), from the formulas."""
    tok: dict[str, list[list[float]]] = {k: [] for k in ("pg", "clip", "ppo_kl", "kl", "tis", "tclip", "tabs", "ois")}
    tok |= {"opsm": [], "diff": []}
    pg_masks = []
    for i, mask in enumerate(batch.masks):
        n, count = len(mask), max(1, sum(mask))
        lps, olds = batch.log_probs[i], batch.old_log_probs[i]
        seq = sum(mask[t] * (lps[t] - olds[t]) for t in range(n)) / count
        drift = -seq
        row = {k: [] for k in tok}
        pg_mask = []
        for t in range(n):
            pg, clip = _pg_token(cfg, i, t, batch, seq)
            keep_opsm = 0.0 if (cfg.use_opsm and batch.advantages[i][t] < 0 and drift > cfg.opsm_delta) else 1.0
            pg *= keep_opsm
            keep = mask[t]
            ratio_tr = math.exp(olds[t] - batch.rollout_log_probs[i][t])
            if cfg.use_tis:
                rollout = batch.rollout_log_probs[i][t]
                w, keep_rs, tclip = tis_token(olds[t], rollout, cfg.tis_type, cfg.tis_clip_low, cfg.tis_clip)
                pg *= w
                keep = keep * keep_rs
                row["tis"].append(ratio_tr), row["tclip"].append(tclip), row["tabs"].append(abs(ratio_tr - 1))
                row["ois"].append(math.exp(lps[t] - olds[t]))
            k = kl(lps[t], batch.ref_log_probs[i][t], cfg.kl_loss_type)
            if cfg.use_unbiased_kl:
                k *= math.exp(lps[t] - olds[t])
            row["pg"].append(pg), row["clip"].append(clip), row["ppo_kl"].append(olds[t] - lps[t]), row["kl"].append(k)
            row["opsm"].append(1 - keep_opsm), row["diff"].append(abs(olds[t] - batch.rollout_log_probs[i][t]))
            pg_mask.append(keep)
        for key in tok:
            tok[key].append(row[key])
        pg_masks.append(pg_mask)

    def red(key, masks=batch.masks):
        return _reduce(tok[key], masks, cfg, denominators, num_tokens, num_samples)

    out = {"pg_loss": red("pg", pg_masks), "pg_clipfrac": red("clip"), "ppo_kl": red("ppo_kl")}
    total = out["pg_loss"]
    if entropy is not None:
        out["entropy_loss"] = _reduce(entropy, batch.masks, cfg, denominators, num_tokens, num_samples)
        total -= cfg.entropy_coef * out["entropy_loss"]
    if cfg.use_kl_loss:
        out["kl_loss"] = red("kl")
        total += cfg.kl_loss_coef * out["kl_loss"]
    if cfg.use_tis:
        out |= {"tis": red("tis"), "tis_clipfrac": red("tclip"), "tis_abs": red("tabs"), "ois": red("ois")}
    if cfg.use_opsm:
        out["opsm_clipfrac"] = red("opsm")
    out["train_rollout_logprob_abs_diff"] = red("diff")
    out["loss"] = total
    return out


def value_loss(cfg, values, old_values, returns, masks, denominators, num_tokens, num_samples) -> dict[str, float]:
    losses, clips = [], []
    for v, vo, r in zip(values, old_values, returns, strict=True):
        pairs = [value_token(a, b, c, cfg.value_clip) for a, b, c in zip(v, vo, r, strict=True)]
        losses.append([p[0] for p in pairs]), clips.append([p[1] for p in pairs])
    return {
        "value_loss": _reduce(losses, masks, cfg, denominators, num_tokens, num_samples),
        "value_clipfrac": _reduce(clips, masks, cfg, denominators, num_tokens, num_samples),
    }
