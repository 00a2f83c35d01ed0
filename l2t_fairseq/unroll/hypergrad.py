"""Truncated-unroll reverse-mode differentiation (paper section 3.3, Algorithm 1).

Pure functions over explicit parameter dicts.  A *step loss*
``step_loss(params, phi, batch) -> scalar`` is the student's training loss
``L_Phi(f_omega, D_t)`` of eq. (1); the *dev objective* is the quantity the
teacher minimizes (``-M~`` of eq. 2), given as
``dev_value_and_grad(params) -> (J, {name: dJ/dparam})`` so that it can be
computed in chunks (``value_and_grad`` wraps a plain differentiable loss).

The student's steps follow an update rule
(:class:`l2t_fairseq.unroll.optimizer.UpdateRule`: plain SGD as in eq. 1,
fairseq's SGD, or its Adam step), whose learning rate
and decay may differ from step to step (``rule.at(t)``).

The hypergradient is returned with respect to the loss coefficients
``Phi_t`` of every unrolled step, not the teacher's parameters: the caller
chains ``dJ/dPhi_t`` through its teacher (``Phi_t = mu_theta(s_t)``) with one
ordinary backward pass, which is eq. (5) summed over ``t``.
"""

import torch

from l2t_fairseq.unroll.optimizer import Moments

NO_MOMENTS = Moments()  # the adjoints of moments that no later step carries


def detached(params):
    return {name: p.detach() for name, p in params.items()}


def leaves(params):
    """Fresh leaves that require grad, sharing storage with ``params``."""
    return {name: p.detach().requires_grad_() for name, p in params.items()}


def inner_step(step_loss, params, moments, phi, batch, rule, create_graph=False):
    """Eq. (1) under the student's update ``rule``: returns ``(omega_{t+1}, moments_{t+1})``.

    Plain SGD (the paper): ``omega_{t+1} = omega_t - eta * dL_{Phi_t}(omega_t, D_t) / d omega_t``;
    see :mod:`l2t_fairseq.unroll.optimizer` for the clipping, preconditioned, momentum and decay terms.
    ``moments``: :class:`~l2t_fairseq.unroll.optimizer.Moments` (``rule.moments()`` at the first step).
    """
    loss = step_loss(params, phi, batch)
    grads = torch.autograd.grad(
        loss, tuple(params.values()), create_graph=create_graph, materialize_grads=True
    )
    grads = rule.direction(dict(zip(params, grads)), params)
    velocity = rule.moved_first_moment(moments.first, grads)
    second = rule.moved_second_moment(moments.second, grads)
    step = {name: rule.decay * p - rule.lr * rule.precondition(name, velocity[name], second)
            for name, p in params.items()}
    return step, Moments(velocity if rule.momentum else None, second)


def unroll(step_loss, params, phis, batches, rule, keep_every=1):
    """The forward loop of Algorithm 1, without a graph.

    Returns ``{t: (omega_t, moments_t)}`` for ``t = 0, k, 2k, ...`` (``k =
    keep_every``) and ``t = U``: what the reverse loop keeps.  With ``k = 1``
    that is every snapshot (memory ``U x |omega|``, three times that with
    Adam's moments); with ``k ~ sqrt(U)`` the reverse loop recomputes the steps
    between two kept snapshots (memory ``(U / k + k) x |omega|``, one more
    forward pass in time).
    """
    kept = {0: (detached(params), rule.moments())}
    current, moments = kept[0]
    with torch.enable_grad():
        for t, (phi, batch) in enumerate(zip(phis, batches)):
            current, moments = inner_step(step_loss, leaves(current), moments, phi.detach(), batch, rule.at(t))
            current, moments = detached(current), moments.detached()
            if (t + 1) % keep_every == 0 or t + 1 == len(batches):
                # the moments to recompute a segment from here (keep_every > 1), and for Adam's reverse step
                kept[t + 1] = (current, moments if keep_every > 1 or moments.second is not None else Moments())
    return kept


def final_weights(step_loss, params, phis, batches, rule):
    """``omega_U``."""
    return unroll(step_loss, params, phis, batches, rule, keep_every=len(batches) or 1)[len(batches)][0]


def segment(step_loss, start, phis, batches, rule, begin, end):
    """``[(omega_t, moments_t) for t in begin..end-1]`` recomputed from the kept ``start = (omega_begin,
    moments_begin)``."""
    snapshots = [start]
    with torch.enable_grad():
        for t in range(begin, end - 1):
            weights, moments = snapshots[-1]
            step, moments = inner_step(step_loss, leaves(weights), moments, phis[t].detach(), batches[t], rule.at(t))
            snapshots.append((detached(step), moments.detached()))
    return snapshots


def reverse_step(step_loss, params, moments, phi, batch, rule, d_next, d_moments_next=NO_MOMENTS):
    """One step of the reverse loop: eqs. (4) and (5) with one Hessian-vector product.

    Given the adjoints of ``omega_{t+1}`` and of the moments ``m_{t+1}``, ``v_{t+1}`` (where the next step
    carries them), recomputes ``g' = dL/d omega_t`` (clipped, with its weight decay) with a graph and
    differentiates ``g' . a`` once more, with respect to ``omega_t`` (eq. 4's Hessian-vector product) and
    ``Phi_t`` (eq. 5's mixed term), where ``a`` is the adjoint of ``g'``: through ``m_{t+1}`` (``(1 - beta) (d m -
    lr P d omega)``) and, under Adam, through ``v_{t+1}``.  ``moments``: ``(m_t, v_t)``, needed under Adam only
    (the step is linear in ``m_t`` otherwise).  Returns ``(d omega_t, Moments(d m_t, d v_t), dJ/dPhi_t)``.
    """
    with torch.enable_grad():
        params = leaves(params)
        phi = phi.detach().requires_grad_()
        grads = torch.autograd.grad(
            step_loss(params, phi, batch), tuple(params.values()), create_graph=True
        )
        grads = rule.direction(dict(zip(params, grads)), params)
        g = detached(grads)
        second = rule.moved_second_moment(moments.second, g)  # v_{t+1}
        d_first = {  # of m_{t+1} (m_{t+1} = g' without momentum)
            name: -rule.lr * rule.precondition(name, d, second)
            + (d_moments_next.first[name] if d_moments_next.first is not None else 0)
            for name, d in d_next.items()
        }
        a = {name: (1 - rule.momentum) * d for name, d in d_first.items()}
        d_second = None
        if second is not None:
            first = rule.moved_first_moment(moments.first, g)  # m_{t+1}
            d_second = {
                name: -rule.lr * d * rule.precondition_slope(name, first[name], second)
                + (d_moments_next.second[name] if d_moments_next.second is not None else 0)
                for name, d in d_next.items()
            }
            a = {name: a[name] + 2 * (1 - rule.beta2) * g[name] * d_second[name] for name in a}
        grad_dot_a = sum((grads[name] * a[name]).sum() for name in grads)
        *hvp, mixed = torch.autograd.grad(
            grad_dot_a, (*params.values(), phi), materialize_grads=True
        )
    d_params = {name: rule.decay * d_next[name] + h for name, h in zip(params, hvp)}
    d_moments = Moments(
        {name: rule.momentum * d for name, d in d_first.items()} if rule.momentum else None,
        None if d_second is None else {name: rule.beta2 * d for name, d in d_second.items()},
    )
    return d_params, d_moments, mixed


def value_and_grad(loss):
    """``params -> (loss(params), {name: d loss / d param})`` for a loss differentiable in one graph."""

    def value_and_grad_of(params):
        with torch.enable_grad():
            params = leaves(params)
            value = loss(params)
            grads = torch.autograd.grad(value, tuple(params.values()), materialize_grads=True)
        return value.detach(), dict(zip(params, grads))

    return value_and_grad_of


def hypergradient(step_loss, dev_value_and_grad, params, phis, batches, rule, keep_every=1):
    """RMD through ``U = len(batches)`` steps of the update ``rule`` from ``params``.

    Returns ``(J(omega_U), [dJ/dPhi_t for t in 0..U-1], omega_U)``.  ``params``
    are not modified.  ``keep_every``: see :func:`unroll`; the result does not
    depend on it (the recomputed steps are the same steps, with the same
    dropout seeds).
    """
    steps = len(batches)
    kept = unroll(step_loss, params, phis, batches, rule, keep_every)
    final = kept[steps][0]
    value, d_params = dev_value_and_grad(final)  # eq. (3): d omega_U
    d_moments = NO_MOMENTS  # J depends on omega_U only
    d_phis = [None] * steps
    for begin in reversed(range(0, steps, keep_every)):
        end = min(begin + keep_every, steps)
        snapshots = segment(step_loss, kept[begin], phis, batches, rule, begin, end)
        for t in reversed(range(begin, end)):
            weights, moments = snapshots[t - begin]
            d_params, d_moments, d_phis[t] = reverse_step(
                step_loss, weights, moments, phis[t], batches[t], rule.at(t), d_params, d_moments
            )
    return value, d_phis, final
