"""Search-R1 on slime: a multi-turn custom generate (model -> local search -> observation) and its reward.

`search_r1.generate:generate` is the `--custom-generate-function-path`, `search_r1.reward:reward_func` the
`--custom-rm-path`; `search_r1.prepare` writes the prompt file. See README.md.
"""
