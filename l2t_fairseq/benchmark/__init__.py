"""The benchmark (``l2t-benchmark``), the dev-set search (``l2t-search``) and their plots (``l2t-plots``).

Not imported by the plugin: fairseq loads ``l2t_fairseq`` with ``--user-dir`` and never needs these.
"""
