"""When the teaching does what, decided by the update number alone: every data-parallel worker decides the same,
also one on a dummy batch, so that they meet in the refresh's collectives."""


class RefreshSchedule:
    """``--teacher-interval`` K, ``--unroll-steps`` U and the diagnostics' ``--lookahead-gain-every`` and
    ``--phi-log-every`` of ``cfg``."""

    def __init__(self, cfg):
        self.cfg = cfg

    def refreshes(self, update_num):
        """A refresh at the start of every K-th update."""
        return update_num > 0 and update_num % self.cfg.teacher_interval == 0

    def window_starts(self, update_num):
        """The U updates replayed at the next refresh start here."""
        return (update_num + self.cfg.unroll_steps) % self.cfg.teacher_interval == 0

    def index(self, update_num):
        """0 for the first refresh, 1 for the second..."""
        return update_num // self.cfg.teacher_interval - 1

    def measures_lookahead(self, update_num):
        """The refresh measures the lookahead gain: the 1st, (n+1)-th, (2n+1)-th... unless never."""
        return not self.cfg.no_lookahead_gain and self.index(update_num) % self.cfg.lookahead_gain_every == 0

    def keeps_phi(self, update_num):
        """The refresh logs the whole Phi: the 1st, (n+1)-th, (2n+1)-th... and the last of a run with a
        ``--max-update``."""
        last = 0 < self.cfg.max_update <= update_num + self.cfg.teacher_interval
        return self.index(update_num) % self.cfg.phi_log_every == 0 or last

    def progress(self, update_num, epoch):
        """The state's training progress, in [0, 1]: by ``--max-update``, else by ``--max-epoch``."""
        if self.cfg.max_update > 0:
            return min(update_num / self.cfg.max_update, 1.0)
        return min((epoch - 1) / self.cfg.max_epoch, 1.0)
