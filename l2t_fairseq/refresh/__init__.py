"""The refresh protocol: what the task does at every student update and every K-th one (``teaching``), decided by
the update number alone (``schedule``); the checks at start-up (``startup_checks``); fairseq checkpoints read under
torch's ``weights_only`` (``checkpoints``)."""
