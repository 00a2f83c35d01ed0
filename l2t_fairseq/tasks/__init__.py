from l2t_fairseq.tasks import l2t_translation  # noqa: F401 - registers the task
