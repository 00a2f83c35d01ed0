"""The replay and its hypergradient: the student's updates recorded as it trains (``update_recorder``), the
student as a pure function of its weights (``student``) under the L2T-DLF loss (``loss``), the update rule the
unroll replays (``optimizer``), and reverse-mode differentiation through it (``hypergrad``, paper eqs. 3-5)."""
