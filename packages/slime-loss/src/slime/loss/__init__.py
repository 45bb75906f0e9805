"""slime.loss: Pure torch RL math: advantages, KL estimators, policy/value losses, TIS and reductions."""
