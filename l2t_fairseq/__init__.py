"""l2t-fairseq: Learning to Teach with Dynamic Loss Functions as a fairseq plugin.

Load with ``fairseq-train --user-dir l2t_fairseq --task l2t_translation --criterion l2t_dlf``.
"""

from l2t_fairseq import checkpoints, criterions, models, tasks  # noqa: F401 - registers with fairseq
