"""Actor-critic for sequence prediction (Bahdanau et al., ICLR 2017), as pure functions.

The actor is the student, ``p(a | y^_<t, x)``.  The critic reads the
*reference* ``Y`` and the actor's own prefix ``y^_<t`` and predicts, for every
word ``a`` of the vocabulary, ``Q(a; y^_<t, Y)``: the BLEU the actor will gain
from writing ``a`` next.  Per sampled sentence ``y^`` of length ``T``
(positions ``i = 0..T-1``; position ``i`` chooses ``y^_{i+1}`` after the prefix
``y^_1..y^_i``):

- reward shaping: ``r_i = BLEU(y^_1..y^_{i+1}) - BLEU(y^_1..y^_i)``, whose sum
  is the sentence's BLEU (:func:`prefix_rewards`);
- the critic's TD target, from the delayed actor ``p'`` and critic ``Q'``:
  ``q_i = r_i + sum_a p'(a | y^_1..y^_{i+1}) Q'(a; y^_1..y^_{i+1}, Y)``, and
  ``q_{T-1} = r_{T-1}`` (:func:`td_targets`);
- the critic's loss ``sum_i (Q(y^_{i+1}; ...) - q_i)^2 + lambda * Var_a Q(a; ...)``
  (:func:`critic_loss`);
- the actor's gradient ``sum_i sum_a dp(a | ...)/dtheta * Q(a; ...)``, the
  critic's values held fixed (:func:`actor_objective`);
- the delayed networks follow slowly: ``theta' <- tau theta + (1 - tau) theta'``
  (:func:`soft_update`).
"""

import torch
from fairseq.models.lstm import LSTMDecoder, LSTMEncoder, LSTMModel

from l2t_fairseq.dev_measure.bleu import sentence_bleu


def build_critic(dictionary, embed_dim, hidden_size):
    """The critic: a bidirectional LSTM encoder over the reference and an attentional LSTM decoder over the
    actor's prefix, whose output layer gives one value per vocabulary word (the authors' critic, in fairseq's
    LSTM modules; no dropout, as the reference code).  References are right-padded, hence ``left_pad=False``."""
    encoder = LSTMEncoder(dictionary, embed_dim=embed_dim, hidden_size=hidden_size, bidirectional=True,
                          left_pad=False, dropout_in=0.0, dropout_out=0.0)
    decoder = LSTMDecoder(dictionary, embed_dim=embed_dim, hidden_size=hidden_size, out_embed_dim=embed_dim,
                          encoder_output_units=encoder.output_units, dropout_in=0.0, dropout_out=0.0)
    return LSTMModel(encoder, decoder)


def critic_values(critic, reference, pad, prev_output_tokens):
    """``Q(a; y^_<=i, Y)`` for every row, position and word: ``(rows, T, |V|)``."""
    encoder_out = critic.encoder(reference, src_lengths=reference.ne(pad).sum(-1), enforce_sorted=False)
    return critic.decoder(prev_output_tokens, encoder_out=encoder_out)[0]


def prefix_rewards(tokens, reference, text):
    """``r_i = BLEU(prefix of i + 1 tokens) - BLEU(prefix of i tokens)`` for one sampled sentence, ``BLEU(empty)
    = 0``: the per-step rewards sum to the whole sentence's (smoothed) BLEU.  ``text(tokens)`` is the string BLEU
    reads (:func:`l2t_fairseq.dev_measure.bleu.bleu_text`)."""
    prefix_bleu = [0.0] + [sentence_bleu(text(tokens[: i + 1]), reference) for i in range(len(tokens))]
    return torch.tensor(prefix_bleu[1:]) - torch.tensor(prefix_bleu[:-1])


def td_targets(rewards, next_probs, next_values, mask):
    """``q_i = r_i + sum_a p'(a | prefix_{i+1}) Q'(a; prefix_{i+1})``; the last position of each row (its EOS)
    ends the episode: ``q = r``.  ``next_probs``/``next_values`` are the delayed actor's and critic's outputs at
    every position ``(rows, T, |V|)``; ``mask`` marks the real positions."""
    expected = (next_probs * next_values).sum(-1) * mask
    bootstrap = torch.zeros_like(rewards)
    bootstrap[:, :-1] = expected[:, 1:]  # zero after each row's last real position (masked there)
    return (rewards + bootstrap) * mask


def critic_loss(values, actions, targets, mask, variance_weight):
    """``sum_i (Q(y^_{i+1}) - q_i)^2 + lambda * Var_a Q(a)`` over real positions; returns (loss, squared TD
    error summed, variance penalty summed).  The variance of the values over the vocabulary keeps the values of
    the words the actor never writes near the others' (the authors' answer to a large action space)."""
    chosen = values.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    squared_error = ((chosen - targets.detach()) ** 2 * mask).sum()
    variance = (values.var(-1, unbiased=False) * mask).sum()
    return squared_error + variance_weight * variance, squared_error, variance


def actor_objective(lprobs, values, mask):
    """``sum_i sum_a p(a | prefix_i) Q(a; prefix_i)`` with ``Q`` held fixed: its gradient is the actor's
    gradient, and none of it reaches the critic."""
    return ((lprobs.exp() * values.detach()).sum(-1) * mask).sum()


@torch.no_grad()
def soft_update(target, source, rate):
    """``target <- rate * source + (1 - rate) * target``, parameter by parameter."""
    for t, s in zip(target.parameters(), source.parameters()):
        t.lerp_(s, rate)


@torch.no_grad()
def copy_weights(target, source):
    for t, s in zip(target.parameters(), source.parameters()):
        t.copy_(s)
