"""LLM-PO: fixed-confidence identification of the best candidate from pairwise comparisons.

An adaptive experiment over K candidates samples pairs (i, j), observes "i beats j"
(a tie is half a win) and stops, with probability of error at most δ, once one
candidate provably beats every other (the Condorcet winner). The maths lives in
pure modules (:mod:`.stats`, :mod:`.sampling`, :mod:`.structured`); the simulation
loop in :mod:`.simulate`, instances in :mod:`.instances`, file input in
:mod:`.comparisons`, the LLM judge in :mod:`.judge` and the command line in :mod:`.cli`.
See ``docs/LLM_PO.md`` for the derivations.
"""
