"""l2t-fairseq: Learning to Teach with Dynamic Loss Functions as a fairseq plugin.

Load with ``fairseq-train --user-dir l2t_fairseq --task l2t_translation --criterion l2t_dlf``.
"""

import logging

_configured = bool(logging.getLogger().handlers)
from l2t_fairseq.errors import UsageError, missing_module  # noqa: E402

try:
    import fairseq  # noqa: F401
except ModuleNotFoundError as e:
    if (e.name or "").split(".")[0] != "fairseq":  # fairseq is there, a module its import needs is not
        raise missing_module(e, "fairseq is installed, but its import") from None
    raise UsageError("fairseq is not installed in this Python environment: pip install --no-deps "
                     "fairseq-fixed==0.12.3.1 (README, Install)") from None
from l2t_fairseq import criterions, models, tasks  # noqa: E402, F401 - registers with fairseq
from l2t_fairseq.refresh import checkpoints  # noqa: E402, F401 - lets torch.load read fairseq checkpoints

if not _configured and logging.getLogger().level == logging.DEBUG:
    # importing fairseq's models ran wav2vec2_classification's logging.basicConfig(level=DEBUG); where that was
    # the first configuration (this plugin's console commands: fairseq-train configures logging before), every
    # library's debug lines (matplotlib's font search...) would fill their logs
    logging.getLogger().setLevel(logging.INFO)
