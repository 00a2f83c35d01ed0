from l2t_fairseq.tasks import actor_critic_translation, l2t_translation  # noqa: F401 - registers the tasks
