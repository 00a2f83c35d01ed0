"""When the teaching refreshes, opens its window and measures its diagnostics: from the update number alone."""

from types import SimpleNamespace

from conftest import l2t_train, teacher_state

from l2t_fairseq.refresh.schedule import RefreshSchedule


def schedule(**flags):
    cfg = dict(teacher_interval=10, unroll_steps=4, no_lookahead_gain=False, lookahead_gain_every=5,
               phi_log_every=10, max_update=95, max_epoch=0)
    return RefreshSchedule(SimpleNamespace(**{**cfg, **flags}))


def test_refreshes_and_windows():
    every = schedule()
    assert [u for u in range(40) if every.refreshes(u)] == [10, 20, 30]
    assert [u for u in range(40) if every.window_starts(u)] == [6, 16, 26, 36]


def test_the_diagnostics_are_measured_at_the_1st_then_every_nth_refresh():
    every = schedule(lookahead_gain_every=2, phi_log_every=3)
    refreshes = range(10, 100, 10)
    assert [u for u in refreshes if every.measures_lookahead(u)] == [10, 30, 50, 70, 90]
    assert [u for u in refreshes if every.keeps_phi(u)] == [10, 40, 70, 90]  # and the last, 90 of --max-update 95
    assert not any(schedule(no_lookahead_gain=True).measures_lookahead(u) for u in refreshes)
    assert [u for u in refreshes if schedule(max_update=0, phi_log_every=3).keeps_phi(u)] == [10, 40, 70]


def test_progress_by_updates_or_by_epochs():
    assert schedule().progress(19, epoch=1) == 0.2 and schedule().progress(200, epoch=1) == 1.0
    assert schedule(max_update=0, max_epoch=4).progress(19, epoch=3) == 0.5


def test_which_checkpoints_carry_a_window(toy_data, tmp_path):
    """docs/reference.md: with --unroll-start past a checkpoint saved after N updates carries the window (the
    student's weights and optimizer moments at its start) where N mod K is 0 or above K - U, and none where it is
    1 to K - U. Every multiple of K carries one, so no save interval avoids them all."""
    interval, steps = 3, 2
    l2t_train(toy_data, tmp_path, "--max-update", "7", "--teacher-interval", interval, "--unroll-steps", steps,
              "--save-interval-updates", "1", "--teacher-dev-max-tokens", "256", "--teacher-candidates", "2",
              "--disable-validation", "--no-lookahead-gain")
    carried = [n for n in range(1, 8) if teacher_state(tmp_path / f"checkpoint_1_{n}.pt")["window"] is not None]
    assert carried == [n for n in range(1, 8) if n % interval == 0 or n % interval > interval - steps] == [2, 3, 5, 6]
