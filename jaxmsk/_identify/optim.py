"""The optimisers of `identify` on a `Problem`: Levenberg–Marquardt and BFGS (optimistix,
driven step by step for progress lines and a timed loss history), any optax optimiser, and
scipy's `dual_annealing` (the gradient-free baseline)."""

from __future__ import annotations

import time

import diffrax
import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

from .problem import Problem, from_theta, to_theta


def make_solver(method, tol: float):
    import optimistix as optx

    if method in ("levenberg_marquardt", "lm"):
        return "least_squares", optx.LevenbergMarquardt(rtol=tol, atol=tol)
    if method == "bfgs":
        return "minimise", optx.BFGS(rtol=tol, atol=tol)
    if method == "dual_annealing":
        return "annealing", None
    try:
        import optax
    except ImportError:  # pragma: no cover - optax is a dependency
        optax = None
    if optax is not None and isinstance(method, optax.GradientTransformation):
        return "optax", method
    raise ValueError(f"identify: method={method!r}: use 'levenberg_marquardt' (default), 'bfgs', "
                     "'dual_annealing' (gradient-free) or an optax GradientTransformation "
                     "(e.g. optax.adam(1e-2)).")


def loss_value(theta, problem: Problem):
    """½·Σ r² (shares the compiled `loss_parts` used for the final report)."""
    return 0.5 * sum(jnp.sum(p**2) for p in loss_parts(theta, problem))


@eqx.filter_jit
def loss_and_grad(theta, problem: Problem):
    def loss(th):
        r = problem.residuals(th, adjoint=diffrax.RecursiveCheckpointAdjoint())
        return 0.5 * jnp.sum(r**2)
    return eqx.filter_value_and_grad(loss)(theta)


@eqx.filter_jit
def loss_parts(theta, problem: Problem):
    return problem.residual_parts(theta)


def _lsq_fn(theta, problem):
    return problem.residuals(theta), None


def _min_fn(theta, args):
    """BFGS's objective: ½·Σ r² times a constant `scale` (see `_bfgs_scale`)."""
    problem, scale = args
    r = problem.residuals(theta, adjoint=diffrax.RecursiveCheckpointAdjoint())
    return scale * 0.5 * jnp.sum(r**2), None


# BFGS starts from an identity Hessian, so its first trial step is the raw gradient. The
# objective's units make that step arbitrary (a gradient of 10³ in the unconstrained
# coordinates means a first step of 10³, and Armijo backtracking halves it one evaluation at a
# time). The objective is therefore multiplied by a constant that makes the first trial step
# this long (max norm, unconstrained coordinates). BFGS's later steps do not depend on the
# constant (its inverse-Hessian update scales as 1/constant), and the reported losses are
# divided by it again.
_BFGS_FIRST_STEP = 0.1


def _bfgs_scale(grad) -> float:
    g = max(float(jnp.max(jnp.abs(leaf))) for leaf in jax.tree_util.tree_leaves(grad))
    return _BFGS_FIRST_STEP / g if np.isfinite(g) and g > 0 else 1.0


@eqx.filter_jit
def _optx_init(solver, fn, theta, problem, f_struct):
    return solver.init(fn, theta, problem, {}, f_struct, None, frozenset())


@eqx.filter_jit
def _optx_step(solver, fn, theta, problem, state):
    theta, state, _ = solver.step(fn, theta, problem, {}, state, frozenset())
    done, result = solver.terminate(fn, theta, problem, {}, state, frozenset())
    jac = None
    if fn is _lsq_fn:
        # The Jacobian at the accepted iterate (for the covariance). XLA shares it with the
        # solver's own materialisation inside this step, so it costs little here, whereas a
        # separate jacfwd would compile the whole simulation once more.
        import lineax as lx

        jac = lx.materialise(state.f_info.jac).as_matrix()
    return theta, state, done, result, jac


# Levenberg–Marquardt steps without a relative improvement > tol that end a run: each
# rejected step shrinks the trust region (by 4×), so ten in a row mean the optimiser is stuck
# at the objective's noise floor (e.g. a noiseless fit at the integration accuracy).
_STALL = 10


def _anneal(theta0, problem: Problem, max_evaluations, say, label, seed):
    """scipy's dual_annealing (generalised simulated annealing, the family CEINMS uses) on the
    physical parameters within their bounds, without its gradient-based local search: a
    gradient-free baseline on exactly the same objective."""
    from scipy.optimize import dual_annealing

    params = problem.params
    sizes = [p.size for p in params]
    lows = np.concatenate([np.full(p.size, p.lo) for p in params])
    highs = np.concatenate([np.full(p.size, p.hi) for p in params])
    # Keep the search strictly inside the bounds, where θ is finite.
    pad = 1e-3 * (highs - lows)
    bounds = list(zip(lows + pad, highs - pad))
    x0 = np.concatenate([np.asarray(from_theta(p, theta0["phys"][p.name])) for p in params])

    def theta_of(x):
        parts = np.split(np.asarray(x, float), np.cumsum(sizes)[:-1])
        phys = {p.name: jnp.asarray(to_theta(p, v), theta0["phys"][p.name].dtype)
                for p, v in zip(params, parts)}
        return {**theta0, "phys": phys}

    t_start = time.perf_counter()
    loss0 = float(loss_value(theta0, problem))
    compile_s = time.perf_counter() - t_start
    history = [(0.0, loss0)]
    best = [loss0, theta0]
    t0 = time.perf_counter()

    def objective(x):
        th = theta_of(x)
        loss = float(loss_value(th, problem))
        loss = loss if np.isfinite(loss) else 1e30
        if loss < best[0]:
            best[:] = [loss, th]
        history.append((time.perf_counter() - t0, best[0]))
        if len(history) % 500 == 0:
            say(f"{label} evaluation {len(history)}: best loss {best[0]:.4g} "
                f"({history[-1][0]:.1f} s)")
        return loss

    dual_annealing(objective, bounds, x0=np.clip(x0, lows + pad, highs - pad),
                   maxfun=max_evaluations, maxiter=10**9, no_local_search=True, seed=seed)
    return (best[1], history, len(history) - 1, False,
            f"dual_annealing: {len(history) - 1} evaluations", compile_s, None)


def run_solver(kind, solver, theta0, problem, max_steps, say, label, seed=0, tol=1e-6):
    """One optimisation from theta0; returns (theta, history, steps, converged, message,
    compile seconds)."""
    history = []
    t_start = time.perf_counter()
    if kind == "optax":
        import optax

        opt_state = solver.init(eqx.filter(theta0, eqx.is_inexact_array))
        theta = theta0
        loss, grad = loss_and_grad(theta, problem)
        loss = float(loss)
        compile_s = time.perf_counter() - t_start
        t0 = time.perf_counter()
        history.append((0.0, loss))
        best = (loss, theta)
        converged = False
        for step in range(1, max_steps + 1):
            updates, opt_state = solver.update(grad, opt_state, theta)
            theta = optax.apply_updates(theta, updates)
            loss, grad = loss_and_grad(theta, problem)
            loss = float(loss)
            history.append((time.perf_counter() - t0, loss))
            if loss < best[0]:
                best = (loss, theta)
            if step % 25 == 0:
                say(f"{label} step {step}: loss {loss:.4g}")
        return (best[1], history, max_steps, converged, "optax: fixed number of steps", compile_s,
                None)
    if kind == "annealing":
        return _anneal(theta0, problem, max_steps, say, label, seed)
    if kind == "least_squares":
        fn, args = _lsq_fn, problem
    else:
        fn, args = _min_fn, (problem, jnp.asarray(1.0, jax.tree_util.tree_leaves(theta0)[0].dtype))
    f_struct = jax.eval_shape(lambda th: fn(th, args)[0], theta0)
    # Compile the initialisation, one step and the forward pass, then start the timed run
    # from scratch with the compiled functions.
    state = _optx_init(solver, fn, theta0, args, f_struct)
    first = _optx_step(solver, fn, theta0, args, state)
    jax.block_until_ready(first[0])
    loss0 = float(loss_value(theta0, problem))
    compile_s = time.perf_counter() - t_start
    scale = 1.0
    if kind == "minimise":
        # BFGS's first step evaluated the gradient at theta0 (it is in the accepted state);
        # the timed run starts over with the scaled objective (`_bfgs_scale`), a traced
        # argument, so nothing recompiles.
        scale = _bfgs_scale(first[1].f_info.grad)
        say(f"{label}: BFGS objective scaled by {scale:.3g} (first trial step "
            f"{_BFGS_FIRST_STEP} in the unconstrained coordinates)")
        args = (problem, jnp.asarray(scale, args[1].dtype))
    t0 = time.perf_counter()
    history.append((0.0, loss0))
    state = _optx_init(solver, fn, theta0, args, f_struct)
    theta, steps, stalled = theta0, 0, False
    while True:
        theta, state, done, result, jac = _optx_step(solver, fn, theta, args, state)
        steps += 1
        loss = float(0.5 * jnp.sum(state.f_info.residual**2)) if kind == "least_squares" \
            else float(state.f_info.f) / scale
        history.append((time.perf_counter() - t0, loss))
        if steps % 5 == 0:
            say(f"{label} step {steps}: loss {loss:.4g} ({history[-1][0]:.1f} s)")
        if bool(done) or steps >= max_steps:
            break
        if (kind == "least_squares" and len(history) > _STALL
                and history[-_STALL - 1][1] - loss <= tol * abs(loss)):
            # Steps keep being rejected once the loss sits at the simulation's own accuracy.
            stalled = True
            break
    import optimistix as optx

    converged = bool((bool(done) and bool(result == optx.RESULTS.successful)) or stalled)
    message = (f"converged (loss changed by < tol over {_STALL} steps)" if stalled
               else "converged" if converged
               else optx.RESULTS[result] if bool(done) else f"stopped at max_steps={max_steps}")
    # LM's state holds the linearised residual at the accepted iterate; `_result` reuses it
    # for the covariance instead of compiling a separate Jacobian.
    return theta, history, steps, converged, message, compile_s, jac


# -- identify ----------------------------------------------------------------------------------
