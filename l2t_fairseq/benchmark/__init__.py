"""The benchmark (``l2t-benchmark``), the dev-set search (``l2t-search``) and their plots (``l2t-plots``).

Not imported by the plugin: fairseq loads ``l2t_fairseq`` with ``--user-dir`` and never needs these.
"""

from l2t_fairseq.errors import missing_module

try:  # what the commands draw and write their figures with, which the plugin itself does not need
    import matplotlib  # noqa: F401
    import PIL  # noqa: F401
except ModuleNotFoundError as e:
    raise missing_module(e, "the l2t-* commands") from None
