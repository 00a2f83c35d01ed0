"""Teaching: the refresh protocol of the teacher inside fairseq's training loop.

Ordinary student steps are fairseq's own.  :class:`Teaching` records them
(:class:`UpdateRecorder`), and every ``--teacher-interval`` updates refreshes
``s_t`` and, unless the teacher is frozen, takes a teacher step: RMD through the
last ``--unroll-steps`` updates (paper eqs. 1, 3-5, Algorithm 1), maximizing the
expected BLEU of a dev batch (section 3.3, :class:`DevMeasure`).  The teacher
and ``s_t`` are :class:`Coefficients`.  Refreshes are logged by :mod:`teacher_log`.

A refresh, on every data-parallel worker at the same update (decided from the
update number alone, so a worker on a dummy batch takes part too), runs these
collectives in this order (:mod:`l2t_fairseq.distributed`):

1. the train-BLEU statistics of the workers' batches, summed;
2. the dev-BLEU statistics of their dev batches, summed (unless the teacher is
   frozen and ``--eval-bleu`` gives dev BLEU);
3. the hypergradient, averaged over the workers that have one, and the mean dev
   measure (:func:`l2t_fairseq.teacher.step.teacher_step`);
4. the lookahead gain, averaged (if measured and the step was taken);
5. the teacher's digest, gathered and compared.
"""

import dataclasses
import logging
import time

from fairseq import utils

from l2t_fairseq import distributed, teacher_log
from l2t_fairseq.errors import UsageError
from l2t_fairseq.refresh.schedule import RefreshSchedule
from l2t_fairseq.teacher.step import Unrolled, keep_every, teach_once
from l2t_fairseq.unroll.optimizer import check_optimizer, snapshot, step_size
from l2t_fairseq.unroll.student import fp32_params, make_step_loss
from l2t_fairseq.unroll.update_recorder import UpdateRecorder, attempt_starts

logger = logging.getLogger(__name__)


class Teaching:
    """The teaching of one training run: the student's loss (``loss(lprobs, target, phi)`` and ``sample_size``,
    the criterion's), the coefficients, the dev measure, and the training data's target-word frequency (a
    function, called once, for ``teacher.jsonl``)."""

    def __init__(self, cfg, coefficients, measure, target_frequency, eval_bleu=False):
        self.cfg, self.coefficients, self.measure, self.eval_bleu = cfg, coefficients, measure, eval_bleu
        self.device = coefficients.device
        self.recorder = UpdateRecorder(cfg.unroll_steps, self.device)
        self.schedule = RefreshSchedule(cfg)
        self.target_frequency, self.frequency = target_frequency, None
        self.loss = self.sample_size = None
        self.epoch = 1

    def set_student_loss(self, loss, sample_size):
        self.loss, self.sample_size = loss, sample_size

    # -- watching the student ----------------------------------------------------

    def observe(self, sample, model, optimizer, update_num):
        """Called for every micro-batch the trainer trains on (``sample`` None for a dummy batch, which is no
        student step, so never replayed)."""
        if update_num != self.recorder.update or self.recorder.current is None or attempt_starts(model):
            self.begin_attempt(sample, model, optimizer, update_num)
        if sample is not None:
            self.recorder.add(sample)

    def begin_attempt(self, sample, model, optimizer, update_num):
        """The first micro-batch of an attempt at an update.  At a new update: refresh if it is due, and open the
        window replayed at the next refresh if it starts here."""
        cfg = self.cfg
        if self.recorder.update is None:  # the run's first update, not resumed
            check_optimizer(optimizer, cfg.unroll_optimizer)
            if cfg.freeze_teacher and not cfg.teacher_path:
                logger.warning("--freeze-teacher without --teacher-path: the teacher is the untrained one, a fixed "
                               "loss with every coefficient at --phi-init")
        if self.recorder.advance(update_num):
            self.coefficients.set_feature("progress", self.schedule.progress(update_num, self.epoch))
            if self.schedule.refreshes(update_num):
                self.guarded_refresh(sample, model, optimizer, update_num)
            if cfg.unroll_start == "past" and self.schedule.window_starts(update_num) and not cfg.freeze_teacher:
                self.recorder.open_window(update_num, snapshot(model, optimizer, cfg))
        # s_t, the trainer's dropout seed, and (replayed from the past only, where each step keeps its own) the
        # step's learning rate and decay
        step = None
        if cfg.unroll_start == "past":
            step = step_size(optimizer, cfg.unroll_optimizer, cfg.unroll_lr, not cfg.no_unroll_momentum)
        self.recorder.begin(self.coefficients.state, cfg.seed + update_num, step)

    def guarded_refresh(self, sample, model, optimizer, update_num):
        """The refresh, leaving the student's RNG (its dropout masks) as it was: building a dev-batch iterator
        draws from it, and a resumed run builds one where an uninterrupted one did not.  Running out of memory
        in it stops the run: fairseq's recovery would go on without the refresh on this worker alone, while the
        others wait in its collectives."""
        rng = utils.get_rng_state()
        try:
            self.refresh(sample, model, optimizer, update_num)
        except RuntimeError as e:
            if "out of memory" not in str(e):
                raise
            raise UsageError(
                f"the teacher's refresh at update {update_num} ran out of memory on {self.device}: lower "
                "--teacher-dev-max-tokens, --teacher-candidates or --unroll-steps, or set --unroll-keep-every"
            ) from None
        finally:
            utils.set_rng_state(rng)

    # -- one refresh ----------------------------------------------------------------

    def refresh(self, sample, model, optimizer, update_num):
        """Every K updates: refresh the BLEU features of ``s_t``, update the teacher, log it."""
        start = time.perf_counter()
        coefficients, measure = self.coefficients, self.measure
        coefficients.set_feature("train_bleu", measure.greedy_bleu(model, sample)[0])
        update = not self.cfg.freeze_teacher
        dev_sample = greedy = None
        if update or not self.eval_bleu:  # with --eval-bleu, fairseq's validation sets dev BLEU
            dev_sample = measure.next_dev_batch(model)
            bleu, greedy = measure.greedy_bleu(model, dev_sample)
            if not self.eval_bleu:
                coefficients.set_feature("dev_bleu", bleu)
        record = {"update": update_num, "state": coefficients.state.tolist()}
        if update:
            record.update(self.teach(model, optimizer, dev_sample, greedy, update_num))
        self.recorder.close_window()
        coefficients.teacher_moved()
        record["teacher_digest"] = distributed.check_consistent(coefficients.teacher, "the teacher")
        record["seconds"] = round(time.perf_counter() - start, 3)
        if distributed.rank() == 0:
            if self.frequency is None:
                self.frequency = self.target_frequency()
            teacher_log.append(self.cfg.save_dir, record, coefficients.phi().cpu(), self.frequency,
                               keep_phi=self.schedule.keeps_phi(update_num))

    def teach(self, model, optimizer, dev_sample, greedy, update_num):
        """The teacher's step(s) of a refresh, and what they measured."""
        cfg, coefficients = self.cfg, self.coefficients
        # a worker without a dev batch, or without the U updates to replay, has weight 0
        contributes = dev_sample is not None and self.recorder.holds_window(
            update_num, cfg.seed + update_num - cfg.unroll_steps, cfg.unroll_start == "past"
        )
        unrolled = self.unrolled(model, optimizer, dev_sample, greedy, update_num) if contributes else None
        measured = []  # M~ before each replayed step
        lookahead = self.schedule.measures_lookahead(update_num)
        for replay in range(cfg.teacher_replays):
            last = replay == cfg.teacher_replays - 1
            step = teach_once(coefficients.teacher, coefficients.optimizer, unrolled, lookahead=last and lookahead)
            coefficients.skipped_steps += step.skipped
            measured.append(step.dev_expected_bleu)
        step.log_metrics()
        record = {**step.record(), "skipped_steps": coefficients.skipped_steps}
        if cfg.teacher_replays > 1:
            record["replays_dev_expected_bleu"] = measured
        return record

    def unrolled(self, model, optimizer, dev_sample, greedy, update_num):
        """This worker's part of a teacher step: its latest U updates, and candidates for its dev batch (and for
        a held-out one, for the lookahead gain)."""
        cfg = self.cfg
        batches, states, steps = self.recorder.replay()
        seed = cfg.seed + update_num
        measured = self.schedule.measures_lookahead(update_num)  # the held-out batch is drawn at every refresh
        heldout = None if cfg.no_lookahead_gain else self.measure.heldout_objective(model, seed, measured)
        student = None
        if cfg.unroll_start == "past":  # each step with the learning rate and decay the student took it with
            params, rule = self.recorder.window[1]
            rule = dataclasses.replace(rule, lr=[lr for lr, _ in steps], decay=[decay for _, decay in steps])
            student = fp32_params(model, optimizer)
        else:
            params, rule = snapshot(model, optimizer, cfg, copy=False)
        return Unrolled(
            step_loss=make_step_loss(model, self.loss, self.sample_size),
            params={name: p.to(self.device) for name, p in params.items()},
            batches=batches,
            states=states,
            rule=rule,
            dev_objective=self.measure.objective(model, dev_sample, seed, greedy),
            device_type=self.device.type,
            heldout=heldout,
            keep_every=keep_every(cfg.unroll_keep_every, cfg.unroll_steps, params, rule),
            student=student,
        )

    # -- checkpoints ------------------------------------------------------------------

    def state_dict(self):
        """Everything a resumed run needs to go on as if it had not stopped.  fairseq asks only the first worker
        (no collective may run here): its latest updates and dev-batch position are saved; another worker resumes
        with none and takes part with weight 0 until it has taken U updates again."""
        return {**self.coefficients.state_dict(), "world_size": distributed.world_size(),
                **self.measure.state_dict(), **self.recorder.state_dict()}

    def load_state_dict(self, state):
        self.coefficients.load_state_dict(state)
        self.recorder.update = state.get("update")
        if distributed.rank() == 0 and state.get("world_size") == distributed.world_size():
            self.recorder.load_state_dict(state)
            self.measure.load_state_dict(state)
        if self.recorder.update is not None and distributed.rank() == 0:
            teacher_log.truncate(self.cfg.save_dir, self.recorder.update)
