"""Truncated-unroll reverse-mode differentiation (paper section 3.3, Algorithm 1).

Pure functions over explicit parameter dicts.  A *step loss*
``step_loss(params, phi, batch) -> scalar`` is the student's training loss
``L_Phi(f_omega, D_t)`` of eq. (1); the *dev objective* is the quantity the
teacher minimizes (``-M~`` of eq. 2), given as
``dev_value_and_grad(params) -> (J, {name: dJ/dparam})`` so that it can be
computed in chunks (``value_and_grad`` wraps a plain differentiable loss).

The student's steps follow an update rule
(:class:`l2t_fairseq.unroll_optimizer.UpdateRule`: plain SGD as in eq. 1, or
the student's own Adam step with its moments frozen).

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


def inner_step(step_loss, params, velocity, phi, batch, rule, create_graph=False):
    """Eq. (1) under the student's update ``rule``: returns ``(omega_{t+1}, m_{t+1})``.

    Plain SGD (the paper): ``omega_{t+1} = omega_t - eta * dL_{Phi_t}(omega_t, D_t) / d omega_t``;
    see :mod:`l2t_fairseq.unroll_optimizer` for the preconditioned, momentum and decay terms.
    """
    loss = step_loss(params, phi, batch)
    grads = torch.autograd.grad(
        loss, tuple(params.values()), create_graph=create_graph, materialize_grads=True
    )
    grads = dict(zip(params, grads))
    if rule.momentum:
        velocity = {name: rule.momentum * velocity[name] + (1 - rule.momentum) * g for name, g in grads.items()}
    else:
        velocity = grads
    step = {name: rule.decay * p - rule.lr * rule.precondition(name, velocity[name]) for name, p in params.items()}
    return step, velocity


def unroll(step_loss, params, phis, batches, rule):
    """The forward loop of Algorithm 1, without a graph.

    Returns the ``U + 1`` snapshots ``omega_0 .. omega_U``; this is all the
    reverse loop keeps, so memory grows with ``U x |omega|``.
    """
    snapshots, velocity = [detached(params)], rule.velocity
    with torch.enable_grad():
        for phi, batch in zip(phis, batches):
            step, velocity = inner_step(step_loss, leaves(snapshots[-1]), velocity, phi.detach(), batch, rule)
            snapshots.append(detached(step))
            velocity = detached(velocity)
    return snapshots


def reverse_step(step_loss, params, phi, batch, rule, d_next, d_velocity_next=None):
    """One step of the reverse loop: eqs. (4) and (5) with one Hessian-vector product.

    Given the adjoints of ``omega_{t+1}`` (and of ``m_{t+1}`` with momentum),
    recomputes ``g = dL/d omega_t`` with a graph and differentiates ``g . a``
    once more, with respect to ``omega_t`` (eq. 4's Hessian-vector product)
    and ``Phi_t`` (eq. 5's mixed term), where ``a = d m_{t+1} - lr P d omega_{t+1}``
    is the adjoint of the step direction.  The velocity ``m_t`` enters the
    step linearly, so it is not needed here.  Returns
    ``(d omega_t, d m_t or None, dJ/dPhi_t)``.
    """
    direction = {
        name: -rule.lr * rule.precondition(name, d)
        + (d_velocity_next[name] if d_velocity_next is not None else 0)
        for name, d in d_next.items()
    }
    with torch.enable_grad():
        params = leaves(params)
        phi = phi.detach().requires_grad_()
        grads = torch.autograd.grad(
            step_loss(params, phi, batch), tuple(params.values()), create_graph=True
        )
        grad_dot_a = sum((g * direction[name]).sum() for name, g in zip(params, grads))
        *hvp, mixed = torch.autograd.grad(
            grad_dot_a, (*params.values(), phi), materialize_grads=True
        )
    new_gradient = 1 - rule.momentum  # the share of g in m_{t+1}
    d_params = {name: rule.decay * d_next[name] + new_gradient * h for name, h in zip(params, hvp)}
    d_velocity = {name: rule.momentum * a for name, a in direction.items()} if rule.momentum else None
    return d_params, d_velocity, new_gradient * mixed


def value_and_grad(loss):
    """``params -> (loss(params), {name: d loss / d param})`` for a loss differentiable in one graph."""

    def value_and_grad_of(params):
        with torch.enable_grad():
            params = leaves(params)
            value = loss(params)
            grads = torch.autograd.grad(value, tuple(params.values()), materialize_grads=True)
        return value.detach(), dict(zip(params, grads))

    return value_and_grad_of


def hypergradient(step_loss, dev_value_and_grad, params, phis, batches, rule):
    """RMD through ``U = len(batches)`` steps of the update ``rule`` from ``params``.

    Returns ``(J(omega_U), [dJ/dPhi_t for t in 0..U-1])``.  ``params`` are
    not modified.
    """
    snapshots = unroll(step_loss, params, phis, batches, rule)
    value, d_params = dev_value_and_grad(snapshots[-1])  # eq. (3): d omega_U
    d_velocity = None  # J depends on omega_U only
    d_phis = [None] * len(batches)
    for t in reversed(range(len(batches))):
        d_params, d_velocity, d_phis[t] = reverse_step(
            step_loss, snapshots[t], phis[t], batches[t], rule, d_params, d_velocity
        )
    return value, d_phis
