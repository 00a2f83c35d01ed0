"""The teacher's dev batches: an endless, resumable stream of one worker's batches of the valid subset."""

from fairseq import utils

from l2t_fairseq import distributed


class DevBatches:
    """Batches of ``--teacher-dev-max-tokens`` from this worker's shard of the valid subset, reshuffled every
    epoch (seeded by ``--seed`` and the epoch), each worker its own shard.

    A worker whose shard holds only fairseq's empty filler (fewer dev batches
    than workers) gets ``None``, after one whole epoch without a batch: it
    takes part in the teacher step with weight 0 rather than wait forever.
    The position (epoch, batches consumed) is saved in checkpoints, so a
    resumed run sees the dev batches the uninterrupted one would.
    """

    def __init__(self, task, subset, max_tokens, seed):
        self.task, self.subset, self.max_tokens, self.seed = task, subset, max_tokens, seed
        self.epoch, self.consumed = 1, 0
        self.iterator = None

    def start_epoch(self, model):
        task = self.task
        if self.subset not in task.datasets:
            task.load_dataset(self.subset)
        iterator = task.get_batch_iterator(
            dataset=task.dataset(self.subset),
            max_tokens=self.max_tokens,
            max_positions=utils.resolve_max_positions(task.max_positions(), model.max_positions()),
            ignore_invalid_inputs=True,
            seed=self.seed,
            num_shards=distributed.world_size(),
            shard_id=distributed.rank(),
            epoch=self.epoch,
            disable_iterator_cache=True,  # fairseq's own validation iterates this dataset too
        ).next_epoch_itr(shuffle=True)
        for _ in range(self.consumed):  # resumed mid-epoch
            next(iterator, None)
        return iterator

    def next(self, model, device):
        """The next real batch on ``device``, or None if this worker's shard has none."""
        for _ in range(2):  # the rest of this epoch, then one whole epoch
            if self.iterator is None:
                self.iterator = self.start_epoch(model)
            for sample in self.iterator:
                self.consumed += 1
                if sample:  # {} where fairseq pads an uneven shard
                    return utils.apply_to_sample(lambda t: t.to(device), sample)
            self.iterator, self.epoch, self.consumed = None, self.epoch + 1, 0
        return None

    def state_dict(self):
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state):
        self.epoch, self.consumed, self.iterator = state["epoch"], state["consumed"], None
