from l2t_fairseq.criterions import l2t_dlf  # noqa: F401 - registers the criterion
