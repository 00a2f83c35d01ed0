"""Truncated-unroll reverse-mode differentiation (paper section 3.3, Algorithm 1).

Pure functions over explicit parameter dicts.  A *step loss*
``step_loss(params, phi, batch) -> scalar`` is the student's training loss
``L_Phi(f_omega, D_t)`` of eq. (1); the *dev objective* is the quantity the
teacher minimizes (``-M~`` of eq. 2), given as
``dev_value_and_grad(params) -> (J, {name: dJ/dparam})`` so that it can be
computed in chunks (``value_and_grad`` wraps a plain differentiable loss).

The hypergradient is returned with respect to the loss coefficients
``Phi_t`` of every unrolled step, not the teacher's parameters: the caller
chains ``dJ/dPhi_t`` through its teacher (``Phi_t = mu_theta(s_t)``) with one
ordinary backward pass, which is eq. (5) summed over ``t``.
"""

import torch


def detached(params):
    return {name: p.detach() for name, p in params.items()}


def leaves(params):
    """Fresh leaves that require grad, sharing storage with ``params``."""
    return {name: p.detach().requires_grad_() for name, p in params.items()}


def sgd_step(step_loss, params, phi, batch, lr, create_graph=False):
    """Eq. (1): ``omega_{t+1} = omega_t - eta * dL_{Phi_t}(omega_t, D_t) / d omega_t``."""
    loss = step_loss(params, phi, batch)
    grads = torch.autograd.grad(
        loss, tuple(params.values()), create_graph=create_graph, materialize_grads=True
    )
    return {name: p - lr * g for (name, p), g in zip(params.items(), grads)}


def unroll(step_loss, params, phis, batches, lr):
    """The forward loop of Algorithm 1, without a graph.

    Returns the ``U + 1`` snapshots ``omega_0 .. omega_U``; this is all the
    reverse loop keeps, so memory grows with ``U x |omega|``.
    """
    snapshots = [detached(params)]
    with torch.enable_grad():
        for phi, batch in zip(phis, batches):
            step = sgd_step(step_loss, leaves(snapshots[-1]), phi.detach(), batch, lr)
            snapshots.append(detached(step))
    return snapshots


def reverse_step(step_loss, params, phi, batch, lr, d_next):
    """One step of the reverse loop: eqs. (4) and (5) with one Hessian-vector product.

    Given ``d omega_{t+1}``, recomputes ``g = dL/d omega_t`` with a graph and
    differentiates ``g . d omega_{t+1}`` once more, with respect to
    ``omega_t`` (eq. 4's ``H d omega_{t+1}``) and ``Phi_t`` (eq. 5's mixed
    term).  Returns ``(d omega_t, dJ/dPhi_t)``.
    """
    with torch.enable_grad():
        params = leaves(params)
        phi = phi.detach().requires_grad_()
        grads = torch.autograd.grad(
            step_loss(params, phi, batch), tuple(params.values()), create_graph=True
        )
        grad_dot_d = sum((g * d_next[name]).sum() for name, g in zip(params, grads))
        *hvp, mixed = torch.autograd.grad(
            grad_dot_d, (*params.values(), phi), materialize_grads=True
        )
    d_params = {name: d_next[name] - lr * h for name, h in zip(params, hvp)}
    return d_params, -lr * mixed


def value_and_grad(loss):
    """``params -> (loss(params), {name: d loss / d param})`` for a loss differentiable in one graph."""

    def value_and_grad_of(params):
        with torch.enable_grad():
            params = leaves(params)
            value = loss(params)
            grads = torch.autograd.grad(value, tuple(params.values()), materialize_grads=True)
        return value.detach(), dict(zip(params, grads))

    return value_and_grad_of


def hypergradient(step_loss, dev_value_and_grad, params, phis, batches, lr):
    """RMD through ``U = len(batches)`` SGD steps from ``params``.

    Returns ``(J(omega_U), [dJ/dPhi_t for t in 0..U-1])``.  ``params`` are
    not modified.
    """
    snapshots = unroll(step_loss, params, phis, batches, lr)
    value, d_params = dev_value_and_grad(snapshots[-1])  # eq. (3): d omega_U
    d_phis = [None] * len(batches)
    for t in reversed(range(len(batches))):
        d_params, d_phis[t] = reverse_step(
            step_loss, snapshots[t], phis[t], batches[t], lr, d_params
        )
    return value, d_phis
