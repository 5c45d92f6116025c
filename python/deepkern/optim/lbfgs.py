"""``LBFGS`` with ``torch.optim.LBFGS``'s options, defaults, state and iterations: the two-loop
recursion over the last ``history_size`` curvature pairs, a fixed step ``lr`` or a strong-Wolfe
line search (``line_search_fn='strong_wolfe'``, cubic interpolation as in minFunc), and torch's
stopping tests. The parameters are seen as one flat vector (their gradients concatenated in order),
computed with NumPy operations on their backend's arrays; scalars (dot products, step sizes) are
Python floats."""

from __future__ import annotations

import functools
import numbers

import numpy as np

from .. import autograd
from ..backends import to_device
from ..tensor import Tensor
from .optimizer import Optimizer, _check_nonnegative

__all__ = ["LBFGS"]


def _host_array(value) -> np.ndarray:
    """A loaded state value (Tensor, ndarray, or another library's tensor) in host memory."""
    if isinstance(value, Tensor):
        return value.numpy()
    return np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)


def _array_of(state: dict, name: str):
    value = state.get(name)
    return None if value is None else value._array


def _tensor_of(arr):
    return None if arr is None else Tensor._wrap(arr)


def _dot(a, b) -> float:
    return float((a * b).sum())


def _max_abs(a) -> float:
    return float(np.abs(a).max())


def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None) -> float:
    """The minimiser of the cubic through (x1, f1, slope g1) and (x2, f2, slope g2), clamped to
    ``bounds`` (default: the interval between x1 and x2); the midpoint when the cubic has none."""
    xmin_bound, xmax_bound = bounds if bounds is not None else (min(x1, x2), max(x1, x2))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square < 0:
        return (xmin_bound + xmax_bound) / 2.0
    d2 = d2_square**0.5
    if x1 <= x2:
        min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(min_pos, xmin_bound), xmax_bound)


def _strong_wolfe(obj_func, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """A step ``t`` along ``d`` meeting the strong Wolfe conditions (sufficient decrease ``c1``,
    curvature ``c2``), found by bracketing then zooming; ``obj_func(t, d)`` gives the loss and
    flat gradient there. Returns (loss, flat gradient, t, evaluations)."""
    d_norm = _max_abs(d)
    f_new, g_new = obj_func(t, d)
    ls_func_evals = 1
    gtd_new = _dot(g_new, d)

    # bracket an interval containing a point satisfying the conditions
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done = False
    ls_iter = 0
    while ls_iter < max_ls:
        decreased = not (f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev))
        if decreased and abs(gtd_new) <= -c2 * gtd:  # both conditions hold at t
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if not decreased or gtd_new >= 0:  # a minimum lies between t_prev and t
            bracket, bracket_f, bracket_g = [t_prev, t], [f_prev, f_new], [g_prev, g_new]
            bracket_gtd = [gtd_prev, gtd_new]
            break
        # interpolate, extrapolating at most tenfold
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        t_prev, t = t, _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step))
        f_prev, g_prev, gtd_prev = f_new, g_new, gtd_new
        f_new, g_new = obj_func(t, d)
        ls_func_evals += 1
        gtd_new = _dot(g_new, d)
        ls_iter += 1
    if ls_iter == max_ls:  # reached the most evaluations allowed
        bracket, bracket_f, bracket_g = [0.0, t], [f, f_new], [g, g_new]

    # zoom: shrink the bracket until a point satisfies the conditions
    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1])
        # a point too close to an end of the bracket moves inside by a tenth of its length
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                t = max(bracket) - eps if abs(t - max(bracket)) < abs(t - min(bracket)) else min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new = obj_func(t, d)
        ls_func_evals += 1
        gtd_new = _dot(g_new, d)
        ls_iter += 1
        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            bracket[high_pos], bracket_f[high_pos], bracket_g[high_pos], bracket_gtd[high_pos] = (
                t,
                f_new,
                g_new,
                gtd_new,
            )
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                bracket[high_pos] = bracket[low_pos]
                bracket_f[high_pos] = bracket_f[low_pos]
                bracket_g[high_pos] = bracket_g[low_pos]
                bracket_gtd[high_pos] = bracket_gtd[low_pos]
            bracket[low_pos], bracket_f[low_pos], bracket_g[low_pos], bracket_gtd[low_pos] = t, f_new, g_new, gtd_new
    return bracket_f[low_pos], bracket_g[low_pos], bracket[low_pos], ls_func_evals


class LBFGS(Optimizer):
    """L-BFGS (torch.optim.LBFGS): ``step(closure)`` runs up to ``max_iter`` iterations and
    ``max_eval`` evaluations of ``closure`` (default ``max_iter * 5 // 4``), stopping when the
    largest gradient entry is at most ``tolerance_grad`` or the step, or the change of the loss,
    is below ``tolerance_change``. One param group only; every parameter of one dtype and device.
    Its state (the curvature history) lives in ``state`` of the first parameter."""

    def __init__(
        self,
        params,
        lr=1,
        max_iter=20,
        max_eval=None,
        tolerance_grad=1e-7,
        tolerance_change=1e-9,
        history_size=100,
        line_search_fn=None,
    ):
        _check_nonnegative(lr, "learning rate")
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        if line_search_fn not in (None, "strong_wolfe"):
            raise ValueError(f"LBFGS: line_search_fn must be None or 'strong_wolfe', got {line_search_fn!r}")
        counts = {"max_iter": max_iter, "max_eval": max_eval, "history_size": history_size}
        for name, value in counts.items():  # as PyTorch: NumPy ints and whole floats (5.0) count too
            if (
                isinstance(value, bool)
                or not isinstance(value, numbers.Real)
                or not (value >= 1 and float(value).is_integer())
            ):
                raise ValueError(f"LBFGS: {name} must be a positive integer, got {value!r}")
        max_iter, max_eval, history_size = (int(value) for value in counts.values())
        defaults = {
            "lr": lr,
            "max_iter": max_iter,
            "max_eval": max_eval,
            "tolerance_grad": tolerance_grad,
            "tolerance_change": tolerance_change,
            "history_size": history_size,
            "line_search_fn": line_search_fn,
        }
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        self._params = self.param_groups[0]["params"]
        kinds = {(p.dtype, str(p.device)) for p in self._params}
        if len(kinds) != 1:
            raise ValueError(f"LBFGS: all parameters must have one dtype and device, got {sorted(map(str, kinds))}")

    def add_param_group(self, param_group: dict) -> None:
        if self.param_groups:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        super().add_param_group(param_group)

    def _loaded_state(self, name, value, param, where):
        """LBFGS's state: numbers as they are, 0-d arrays as floats, flat vectors (also in lists) as
        copies in the parameters' dtype on their device."""
        if isinstance(value, list):
            return [self._loaded_state(name, v, param, where) for v in value]
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        arr = _host_array(value)
        if arr.ndim == 0:
            return float(arr)
        return Tensor._wrap(to_device(arr, param.device).astype(param.dtype, copy=True))

    # -- the parameters as one flat vector -----------------------------------------------------

    def _gather_flat_grad(self):
        """Every parameter's gradient (zeros where None), flattened and concatenated."""
        views = [
            p._backend().zeros(p.numel(), p.dtype) if p.grad is None else p.grad._array.reshape(-1)
            for p in self._params
        ]
        return np.concatenate(views)

    def _add_grad(self, step_size: float, update) -> None:
        """Parameters += step_size * update (the flat vector cut into the parameters' shapes)."""
        offset = 0
        for p in self._params:
            n = p.numel()
            p._array += step_size * update[offset : offset + n].reshape(p.shape)
            autograd.bump_version(p._array)
            offset += n

    def _set_param(self, arrays) -> None:
        for p, a in zip(self._params, arrays):
            p._array[...] = a
            autograd.bump_version(p._array)

    def _directional_evaluate(self, closure, x, t, d):
        """The loss and flat gradient at x + t d; the parameters are back at ``x`` after."""
        self._add_grad(t, d)
        loss = float(closure())
        flat_grad = self._gather_flat_grad()
        self._set_param(x)
        return loss, flat_grad

    def step(self, closure):
        """Runs the iterations; ``closure`` clears the gradients, computes the loss, calls
        ``backward`` and returns the loss. Returns the loss of the first evaluation."""
        if closure is None:
            raise TypeError("LBFGS.step needs a closure that re-evaluates the model and returns the loss")

        def evaluate():
            with autograd.enable_grad():
                return closure()

        group = self.param_groups[0]
        lr, max_iter, max_eval = group["lr"], group["max_iter"], group["max_eval"]
        tolerance_grad, tolerance_change = group["tolerance_grad"], group["tolerance_change"]
        line_search_fn, history_size = group["line_search_fn"], group["history_size"]

        state = self.state[self._params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        orig_loss = evaluate()
        loss = float(orig_loss)
        current_evals = 1
        state["func_evals"] += 1
        flat_grad = self._gather_flat_grad()
        if _max_abs(flat_grad) <= tolerance_grad:  # already optimal
            return orig_loss

        d, t, prev_flat_grad = _array_of(state, "d"), state.get("t"), _array_of(state, "prev_flat_grad")
        old_dirs = [v._array for v in state.get("old_dirs", [])]
        old_stps = [v._array for v in state.get("old_stps", [])]
        ro, H_diag, prev_loss = list(state.get("ro", [])), state.get("H_diag"), state.get("prev_loss")

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            # the direction: steepest descent first, then the two-loop recursion
            if state["n_iter"] == 1:
                d = -flat_grad
                old_dirs, old_stps, ro, H_diag = [], [], [], 1.0
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = _dot(y, s)
                if ys > 1e-10:  # keep the pair only where the curvature is positive
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    H_diag = ys / _dot(y, y)
                al = [0.0] * len(old_dirs)
                q = -flat_grad
                for i in range(len(old_dirs) - 1, -1, -1):
                    al[i] = _dot(old_stps[i], q) * ro[i]
                    q = q - al[i] * old_dirs[i]
                r = q * H_diag
                for i in range(len(old_dirs)):
                    be_i = _dot(old_dirs[i], r) * ro[i]
                    r = r + (al[i] - be_i) * old_stps[i]
                d = r
            prev_flat_grad = flat_grad.copy()
            prev_loss = loss

            # the step size: the first iteration's is scaled by the gradient's 1-norm
            t = min(1.0, 1.0 / float(np.abs(flat_grad).sum())) * lr if state["n_iter"] == 1 else lr
            gtd = _dot(flat_grad, d)
            if gtd > -tolerance_change:  # not a descent direction
                break

            ls_func_evals = 0
            if line_search_fn is None:
                self._add_grad(t, d)
                if n_iter != max_iter:  # the last iteration's loss is left to the next step
                    loss = float(evaluate())
                    flat_grad = self._gather_flat_grad()
                    ls_func_evals = 1
            else:
                x_init = [p._array.copy() for p in self._params]
                loss, flat_grad, t, ls_func_evals = _strong_wolfe(
                    functools.partial(self._directional_evaluate, evaluate, x_init),
                    t,
                    d,
                    loss,
                    flat_grad,
                    gtd,
                    max_ls=max_eval - current_evals,
                )
                self._add_grad(t, d)
            opt_cond = _max_abs(flat_grad) <= tolerance_grad
            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals

            if n_iter == max_iter or current_evals >= max_eval or opt_cond:
                break
            if _max_abs(d * t) <= tolerance_change or abs(loss - prev_loss) < tolerance_change:
                break

        state["d"], state["t"], state["prev_flat_grad"] = _tensor_of(d), t, _tensor_of(prev_flat_grad)
        state["old_dirs"], state["old_stps"] = [_tensor_of(a) for a in old_dirs], [_tensor_of(a) for a in old_stps]
        state["ro"], state["H_diag"], state["prev_loss"] = ro, H_diag, prev_loss
        return orig_loss
