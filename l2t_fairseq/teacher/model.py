"""The teacher mu_theta(s_t) -> Phi_t of L2T-DLF (paper section 4.2, Figure 2b)."""

import math

import torch
from torch import nn

PARAMETRIZATIONS = ("linear", "exp")


class Teacher(nn.Module):
    """Attention over N keys: ``Phi_t = W softmax(V s_t)``.

    ``W`` is ``|V| x N`` (one coefficient per target word and key), ``V`` is
    ``N x |s_t|``.  Every column of ``W`` starts at the same value ``phi_init``,
    so at initialization ``Phi_t = phi_init`` for every word and every state:
    the student starts on a fixed, cross-entropy-like loss (see
    :func:`default_phi_init`).  ``V`` starts random so that the keys receive
    different attention weights; with equal weights the columns of ``W`` would
    get identical hypergradients and never separate.  It is drawn from a
    generator of its own, seeded with ``seed``, never from the global RNG.

    ``parametrization="exp"`` learns ``log W`` instead (parameter ``log_W``):
    every coefficient stays positive (a negative one would train the student
    to unlearn its word), and a teacher step changes ``W`` by a factor, so
    the teacher's learning rate is relative to the coefficients' size.
    """

    def __init__(
        self, vocab_size, num_keys=5, state_dim=3, phi_init=None, key_init_std=1.0, parametrization="linear", seed=None
    ):
        super().__init__()
        if phi_init is None:
            phi_init = default_phi_init(vocab_size)
        self.parametrization = parametrization
        start = torch.full((vocab_size, num_keys), float(phi_init))
        if parametrization == "exp":
            self.log_W = nn.Parameter(start.log())
        else:
            self.W = nn.Parameter(start)
        # its own generator: drawing from the global one would shift the student's initialization, and an
        # L2T student would not start from the weights of the cross-entropy student of the same seed
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self.V = nn.Parameter(torch.randn(num_keys, state_dim, generator=generator) * key_init_std)

    @property
    def weights(self):
        """``W``: ``|V| x N``."""
        return self.log_W.exp() if self.parametrization == "exp" else self.W

    @property
    def vocab_size(self):
        return self.weights.size(0)

    def forward(self, state):
        """``state``: ``(state_dim,)`` in [0, 1]; returns ``Phi_t``: ``(|V|,)``."""
        attention = torch.softmax(self.V @ state.to(self.V.dtype), dim=-1)
        return self.weights @ attention


def default_phi_init(vocab_size):
    """``1 / ln |V|``: the initial loss is a rescaled cross-entropy.

    An untrained student gives every word ``log p ~ -ln |V|``, so
    ``Phi * log p ~ -1`` at the start, where the sigmoid is still close to
    linear: ``-sigmoid(Phi log p) ~ -1/2 - Phi log p / 4``.  The per-token
    gradient weight ``Phi sigmoid'(Phi log p)`` then varies by less than 30%
    between ``log p = -ln |V|`` and ``log p = 0``, i.e. the loss behaves like
    cross-entropy scaled by about ``Phi / 4``.  Larger coefficients saturate
    the sigmoid for badly predicted words and stall an untrained student.
    """
    return 1.0 / math.log(max(vocab_size, 3))
