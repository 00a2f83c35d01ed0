"""What pairs the runs of one seed, recomputed from their fairseq-train commands."""

from conftest import PLUGIN, run
from fairseq import checkpoint_utils

from l2t_fairseq.benchmark.pairing import pairing, probe, weights_digest


def command(data, save_dir, *loss, seed=1):
    return [str(data), "--user-dir", PLUGIN, *loss, "--arch", "transformer_l2t_toy", "--optimizer", "adam",
            "--lr", "2e-3", "--max-tokens", "1200", "--max-update", "1", "--cpu", "--seed", str(seed),
            "--save-dir", str(save_dir), "--no-epoch-checkpoints", "--disable-validation"]


CE = ("--task", "translation", "--criterion", "cross_entropy")
L2T = ("--task", "l2t_translation", "--criterion", "l2t_dlf")


def test_the_rows_of_a_seed_start_alike_and_seeds_differ(toy_data, tmp_path):
    ce, l2t, other = (probe(command(toy_data, tmp_path / "unused", *loss, seed=seed))
                      for loss, seed in ((CE, 1), (L2T, 1), (CE, 2)))
    assert ce["initial_weights_sha256"] == l2t["initial_weights_sha256"] != other["initial_weights_sha256"]
    assert ce["first_batches_sha256"] == l2t["first_batches_sha256"] != other["first_batches_sha256"]
    assert ce["first_update_loss"] > 0 and l2t["first_update_loss"] > 0 and ce["batches_per_epoch"] > 1
    assert not (tmp_path / "unused").exists()  # the probe trains in a folder of its own


def test_the_digest_is_of_the_weights_the_run_starts_from(toy_data, tmp_path):
    """A run whose one update cannot move the weights (learning rate 0) ends where it started: its checkpoint has
    the digest the probe gives its command."""
    argv = [*command(toy_data, tmp_path, *CE), "--lr", "0", "--lr-scheduler", "fixed"]
    run("fairseq-train", *argv)
    model = checkpoint_utils.load_model_ensemble([str(tmp_path / "checkpoint_last.pt")],
                                                 arg_overrides={"data": str(toy_data)})[0][0]
    assert weights_digest(model.float()) == probe(argv)["initial_weights_sha256"]


def test_a_resume_after_the_first_epoch_ends_the_shared_batches():
    facts = {"batches_per_epoch": 10, "initial_weights_sha256": "a", "first_batches_sha256": "b"}
    assert pairing(facts, [], [4, 25])["same_batches_until"] == 25  # update 4 is in the first epoch
    assert pairing(facts, ["--update-freq", "2"], [6])["same_batches_until"] == 6  # 5 updates per epoch
    assert pairing(facts, [], None)["same_batches_until"] is None
