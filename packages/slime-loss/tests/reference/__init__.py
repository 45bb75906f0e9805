"""Float64 naive-loop references for slime.loss, written from the formulas (inventory section 5).

They use Python floats and `math` only, loop over samples and tokens, and share no code with the
implementation. `batches` holds the Hypothesis strategies that generate ragged packed batches.
"""
