from l2t_fairseq.criterions import l2t_dlf, sequence_risk, softmax_margin  # noqa: F401 - registers the criteria
