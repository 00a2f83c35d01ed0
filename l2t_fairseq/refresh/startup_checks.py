"""The start-up checks of ``l2t_translation``'s flags: a bad value stops the run with one line naming the flag."""

import os
import zipfile

import numpy as np

from l2t_fairseq.errors import UsageError


def check_config(cfg):
    """Fail at start-up, with one line naming the flag (training adds :func:`check_training_config`)."""
    for flag, value in (
        ("--teacher-interval", cfg.teacher_interval),
        ("--unroll-steps", cfg.unroll_steps),
        ("--teacher-keys", cfg.teacher_keys),
        ("--teacher-dev-max-tokens", cfg.teacher_dev_max_tokens),
        ("--teacher-candidates", cfg.teacher_candidates),
        ("--teacher-replays", cfg.teacher_replays),
        ("--lookahead-gain-every", cfg.lookahead_gain_every),
        ("--phi-log-every", cfg.phi_log_every),
    ):
        if value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    for flag, value in (
        ("--unroll-lr", 1.0 if cfg.unroll_lr is None else cfg.unroll_lr),
        ("--teacher-lr", cfg.teacher_lr),
        ("--teacher-alpha", cfg.teacher_alpha),
        ("--phi-init", 1.0 if cfg.phi_init is None else cfg.phi_init),
    ):
        if not value > 0:
            raise UsageError(f"{flag} must be positive, got {value}")
    if cfg.unroll_keep_every < 0:
        raise UsageError(f"--unroll-keep-every must be at least 0, got {cfg.unroll_keep_every}")
    if cfg.unroll_start == "past" and cfg.unroll_steps > cfg.teacher_interval:
        raise UsageError(
            f"--unroll-start past replays the updates since the last refresh: --unroll-steps ({cfg.unroll_steps}) "
            f"must not exceed --teacher-interval ({cfg.teacher_interval})"
        )
    if cfg.no_unroll_momentum and cfg.unroll_optimizer == "sgd":
        raise UsageError("--no-unroll-momentum is a choice of the Adam unroll; --unroll-optimizer sgd has no momentum")
    if cfg.continue_teacher and not cfg.teacher_path:
        raise UsageError("--continue-teacher goes on training the teacher of --teacher-path, which is not given")
    if cfg.unroll_lr is not None and cfg.unroll_optimizer == "adam":
        raise UsageError("--unroll-lr sets the sgd unroll's learning rate; --unroll-optimizer adam uses Adam's")


def check_training_config(cfg):
    """What only training needs (fairseq-generate builds the task too): one line naming the flag."""
    if cfg.memory_efficient_fp16 or cfg.memory_efficient_bf16:
        raise UsageError(
            "--memory-efficient-fp16/--memory-efficient-bf16 keep no fp32 copy of the student, which the "
            "teacher's unroll needs; use --fp16"
        )
    if cfg.tpu:  # fairseq 0.12 sets --tpu for --bf16, then fails deep in its trainer without torch_xla
        raise UsageError("--bf16/--tpu: fairseq 0.12 trains in bf16 on TPUs only (--bf16 sets --tpu), where the "
                         "teacher's unroll does not run; on a GPU use --fp16")
    if cfg.max_update <= 0 and cfg.max_epoch <= 0:
        raise UsageError("l2t_translation needs --max-update or --max-epoch: training progress is part of s_t")
    if cfg.cpu and cfg.fp16 and not cfg.fp16_no_flatten_grads:  # fairseq would fail an assertion in its trainer
        raise UsageError("--fp16 with --cpu: fairseq's flat fp16 buffer needs a GPU; drop --fp16 (or, to test fp16 "
                         "on the CPU, add --fp16-no-flatten-grads)")
    check_restore_file(cfg)


def check_restore_file(cfg):
    """The checkpoint fairseq will resume from, where there is one, is a whole ``torch.save`` file (a zip archive,
    whose index is at its end: a truncated copy has none)."""
    path = cfg.restore_file
    if path == "checkpoint_last.pt":  # fairseq's default: the save dir's, if it has one
        path = os.path.join(cfg.save_dir, path)
    if os.path.isfile(path) and not zipfile.is_zipfile(path):
        raise UsageError(f"--restore-file {path}: not a whole fairseq checkpoint (truncated, or not a torch.save file)")


def check_dev_batch_size(cfg, dataset, subset):
    """Every sentence of the dev ``subset`` that the teacher may batch (within the task's maximum positions) fits in
    ``--teacher-dev-max-tokens``: fairseq's batching would fail an assertion at the first refresh.  A frozen
    teacher reading dev BLEU from fairseq's validation draws no dev batch."""
    if cfg.freeze_teacher and cfg.eval_bleu:
        return
    source = np.asarray(dataset.src_sizes)
    target = np.asarray(dataset.tgt_sizes) if dataset.tgt_sizes is not None else np.zeros_like(source)
    kept = (source <= cfg.max_source_positions) & (target <= cfg.max_target_positions)
    longest = int(np.maximum(source, target)[kept].max(initial=0))
    if longest > cfg.teacher_dev_max_tokens:
        raise UsageError(f"--teacher-dev-max-tokens {cfg.teacher_dev_max_tokens} is smaller than the longest sentence "
                         f"of the {subset} subset ({longest} tokens): raise it to at least {longest}")
