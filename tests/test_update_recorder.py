"""The update recorder keeps each update as fairseq takes it, and gives its records back on its own device."""

import torch
from conftest import make_dictionary, synthetic_batch, tiny_student

from l2t_fairseq.unroll.optimizer import UpdateRule
from l2t_fairseq.unroll.update_recorder import UpdateRecorder, attempt_starts


def attempt(recorder, update_num, *samples):
    new = recorder.advance(update_num)
    recorder.begin(torch.tensor([update_num / 10, 0.0, 0.0]), 100 + update_num)
    for sample in samples:
        recorder.add(sample)
    return new


def test_a_retried_update_keeps_only_the_attempt_that_was_taken():
    """After an fp16 overflow fairseq trains the next batches under the same update number (under --amp, the same
    batches again; after an out-of-memory error, the rest): only the attempt after which the number moved on is
    the student's step."""
    recorder = UpdateRecorder(unroll_steps=3, device=torch.device("cpu"))
    assert attempt(recorder, 4, "a", "b")
    assert attempt(recorder, 5, "overflowed", "too")  # update 4 was taken
    assert not attempt(recorder, 5, "c")  # the retry, under the same number
    assert attempt(recorder, 6) is True
    assert [(u.samples, u.seed) for u in recorder.updates] == [(["a", "b"], 104), (["c"], 105)]


def test_a_dummy_only_attempt_is_no_update():
    recorder = UpdateRecorder(unroll_steps=3, device=torch.device("cpu"))
    attempt(recorder, 1)
    attempt(recorder, 2, "a")
    attempt(recorder, 3)
    assert [u.samples for u in recorder.updates] == [["a"]]


def test_an_attempt_starts_where_fairseq_has_cleared_the_gradients():
    model = tiny_student("transformer", make_dictionary())
    assert attempt_starts(model)
    weight = next(model.parameters())
    weight.grad = torch.zeros_like(weight)
    assert not attempt_starts(model)


def test_restored_records_are_on_the_recorders_device():
    """A checkpoint keeps the records on the CPU; a resumed GPU run replays them against the teacher's CUDA
    weights, so the batches, the states and the window come back on the recorder's device (here 'meta', which any
    machine has)."""
    dictionary = make_dictionary()
    saved = UpdateRecorder(unroll_steps=2, device=torch.device("cpu"))
    for update_num in (1, 2, 3):
        attempt(saved, update_num, synthetic_batch(dictionary, seed=update_num))
    weights = {"w": torch.ones(2)}
    saved.open_window(2, (weights, UpdateRule(lr=0.1, velocity={"w": torch.zeros(2)},
                                              second_moment={"w": torch.ones(2)})))
    restored = UpdateRecorder(unroll_steps=2, device=torch.device("meta"))
    restored.load_state_dict(saved.state_dict())
    restored.advance(4)  # update 3, in progress at the save, was taken
    batches, states, _ = restored.replay()
    assert [seed for _, seed in batches] == [102, 103]
    tensors = [t for samples, _ in batches for s in samples for t in s["net_input"].values() if torch.is_tensor(t)]
    first, (params, rule) = restored.window
    tensors += [*states, *params.values(), *rule.velocity.values(), *rule.second_moment.values()]
    assert tensors and {t.device.type for t in tensors} == {"meta"}
    for record in restored.updates:  # not only once replayed: as they are held
        assert record.state.device.type == "meta"
    assert restored.holds_window(4, 102, past=True) and first == 2


def test_replay_gives_the_updates_on_the_recorders_device():
    """The updates are recorded where fairseq hands them over (a sample may be on the CPU where the teacher's
    weights are on the GPU: a dummy batch, a state built on the CPU); the replay meets the teacher's weights on
    the recorder's device (here 'meta')."""
    dictionary = make_dictionary()
    recorder = UpdateRecorder(unroll_steps=2, device=torch.device("meta"))
    for update_num in (1, 2, 3):
        attempt(recorder, update_num, synthetic_batch(dictionary, seed=update_num))
    recorder.advance(4)
    batches, states, _ = recorder.replay()
    tensors = [t for samples, _ in batches for s in samples for t in s["net_input"].values() if torch.is_tensor(t)]
    assert tensors and len(states) == 2
    assert {t.device.type for t in [*tensors, *states]} == {"meta"}


def test_a_window_saved_with_adams_second_moment_held_fixed_is_dropped():
    """A checkpoint saved inside a window by the unroll that held Adam's second moment fixed keeps a rule with a
    preconditioner and no second moment: that window is dropped (one refresh skipped), the records are kept."""
    dictionary = make_dictionary()
    saved = UpdateRecorder(unroll_steps=2, device=torch.device("cpu"))
    for update_num in (1, 2, 3):
        attempt(saved, update_num, synthetic_batch(dictionary, seed=update_num))
    saved.open_window(2, ({"w": torch.ones(2)}, UpdateRule(lr=0.1)))
    state = saved.state_dict()
    first, params, rule = state["window"]
    del rule["second_moment"], rule["beta2"], rule["eps"]
    state["window"] = (first, params, {**rule, "preconditioner": {"w": torch.ones(2)}})
    restored = UpdateRecorder(unroll_steps=2, device=torch.device("cpu"))
    restored.load_state_dict(state)
    restored.advance(4)
    assert restored.window is None and not restored.holds_window(4, 102, past=True)
    assert [u.seed for u in restored.updates] == [102, 103]
