from l2t_fairseq.criterions import (  # noqa: F401 - registers the criteria
    actor_critic,
    l2t_dlf,
    loss_truncation,
    sequence_risk,
    softmax_margin,
    token_adaptive,
)
