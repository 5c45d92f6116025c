"""The base classes: :class:`Distribution` (shapes, sampling, argument validation) and
:class:`ExponentialFamily` (entropy and KL divergence from the log normalizer), as PyTorch's."""

from __future__ import annotations

import warnings

from .. import autograd
from ..tensor import Tensor
from . import constraints
from .utils import broadcast_all, is_number, lazy_property, sum_rightmost

__all__ = ["Distribution", "ExponentialFamily"]


class Distribution:
    """The base class of probability distributions: ``batch_shape`` (the shape over which parameters are
    batched), ``event_shape`` (the shape of one sample) and ``validate_args`` (check the parameters and
    the values scored; default: :meth:`set_default_validate_args`, on unless Python runs with -O)."""

    has_rsample = False
    has_enumerate_support = False
    _validate_args = __debug__

    @staticmethod
    def set_default_validate_args(value: bool) -> None:
        """Turns argument validation on or off for distributions created without ``validate_args``."""
        if value not in [True, False]:
            raise ValueError
        Distribution._validate_args = value

    def __init__(self, batch_shape=(), event_shape=(), validate_args=None):
        self._batch_shape = tuple(batch_shape)
        self._event_shape = tuple(event_shape)
        if validate_args is not None:
            self._validate_args = validate_args
        if self._validate_args:
            try:
                arg_constraints = self.arg_constraints
            except NotImplementedError:
                arg_constraints = {}
                warnings.warn(
                    f"{self.__class__} does not define `arg_constraints`. Please set `arg_constraints = {{}}` or "
                    "initialize the distribution with `validate_args=False` to turn off validation.",
                    stacklevel=2,
                )
            for param, constraint in arg_constraints.items():
                if constraints.is_dependent(constraint):
                    continue  # cannot be checked
                if param not in self.__dict__ and isinstance(getattr(type(self), param), lazy_property):
                    continue  # not given: computed from another parameter
                value = getattr(self, param)
                if not bool(constraint.check(value).all()):
                    raise ValueError(
                        f"Expected parameter {param} ({type(value).__name__} of shape {tuple(value.shape)}) "
                        f"of distribution {self!r} to satisfy the constraint {constraint!r}, "
                        f"but found invalid values:\n{value}"
                    )

    def expand(self, batch_shape, _instance=None):
        """A distribution of batch shape ``batch_shape`` whose parameters are this one's expanded (not
        copied, nor validated again)."""
        raise NotImplementedError

    @property
    def batch_shape(self) -> tuple:
        """The shape over which the parameters are batched."""
        return self._batch_shape

    @property
    def event_shape(self) -> tuple:
        """The shape of a single sample."""
        return self._event_shape

    @property
    def arg_constraints(self) -> dict:
        """The constraint of each parameter, by name."""
        raise NotImplementedError

    @property
    def support(self):
        """The constraint the values of the distribution satisfy."""
        raise NotImplementedError

    @property
    def mean(self):
        raise NotImplementedError

    @property
    def mode(self):
        raise NotImplementedError(f"{self.__class__} does not implement mode")

    @property
    def variance(self):
        raise NotImplementedError

    @property
    def stddev(self):
        return self.variance.sqrt()

    def sample(self, sample_shape=()):
        """A sample of shape ``sample_shape + batch_shape + event_shape``, outside the graph."""
        with autograd.no_grad():
            return self.rsample(sample_shape)

    def rsample(self, sample_shape=()):
        """A reparameterized sample: differentiable with respect to the parameters."""
        raise NotImplementedError

    def sample_n(self, n: int):
        """``sample((n,))`` (deprecated, as in PyTorch)."""
        warnings.warn("`sample_n(n)` will be deprecated. Use `sample((n,))` instead.", FutureWarning, stacklevel=2)
        return self.sample((n,))

    def log_prob(self, value):
        """The log of the probability density or mass at ``value``."""
        raise NotImplementedError

    def cdf(self, value):
        """The cumulative distribution function at ``value``."""
        raise NotImplementedError

    def icdf(self, value):
        """The inverse cumulative distribution function at ``value``."""
        raise NotImplementedError

    def enumerate_support(self, expand=True):
        """The values of a discrete distribution along dimension 0, of shape ``(cardinality,) + batch_shape
        + event_shape`` (``expand=False``: singleton batch dimensions)."""
        raise NotImplementedError

    def entropy(self):
        """The entropy, of shape ``batch_shape``."""
        raise NotImplementedError

    def perplexity(self):
        """``exp(entropy())``."""
        return self.entropy().exp()

    def _extended_shape(self, sample_shape=()) -> tuple:
        """``sample_shape + batch_shape + event_shape``."""
        return tuple(sample_shape) + self._batch_shape + self._event_shape

    def _validate_sample(self, value) -> None:
        """Raises ValueError unless ``value`` is a Tensor whose rightmost dimensions broadcast with
        ``batch_shape + event_shape`` and whose events lie in the support."""
        if not isinstance(value, Tensor):
            raise ValueError("The value argument to log_prob must be a Tensor")
        event_dim_start = value.ndim - len(self._event_shape)
        if value.shape[event_dim_start:] != self._event_shape:
            raise ValueError(
                f"The right-most size of value must match event_shape: {value.shape} vs {self._event_shape}."
            )
        expected_shape = self._batch_shape + self._event_shape
        for i, j in zip(reversed(value.shape), reversed(expected_shape)):
            if i != 1 and j != 1 and i != j:
                raise ValueError(
                    f"Value is not broadcastable with batch_shape+event_shape: {value.shape} vs {expected_shape}."
                )
        try:
            support = self.support
        except NotImplementedError:
            warnings.warn(
                f"{self.__class__} does not define `support` to enable sample validation. Please initialize "
                "the distribution with `validate_args=False` to turn off validation.",
                stacklevel=2,
            )
            return
        if not bool(support.check(value).all()):
            raise ValueError(
                f"Expected value argument ({type(value).__name__} of shape {tuple(value.shape)}) "
                f"to be within the support ({support!r}) of the distribution {self!r}, "
                f"but found invalid values:\n{value}"
            )

    def _get_checked_instance(self, cls, _instance=None):
        """A bare instance for :meth:`expand` of ``cls`` (the class defining it) to fill in."""
        if _instance is None and type(self).__init__ != cls.__init__:
            raise NotImplementedError(
                f"Subclass {self.__class__.__name__} of {cls.__name__} that defines a custom __init__ method "
                "must also define a custom .expand() method."
            )
        return self.__new__(type(self)) if _instance is None else _instance

    def _finish_expand(self, new, batch_shape, event_shape=None):
        """Sets the shapes of ``new`` (an expanded copy) and this distribution's validation flag on it."""
        Distribution.__init__(new, batch_shape, self._event_shape if event_shape is None else event_shape, False)
        new._validate_args = self._validate_args
        return new

    def __repr__(self):
        """The class and its given parameters: their value if a single element, else their shape."""
        given = {name: self.__dict__[name] for name in self.arg_constraints if name in self.__dict__}
        shown = (f"{name}: {v if v.numel() == 1 else v.size()}" for name, v in given.items())
        return self.__class__.__name__ + "(" + ", ".join(shown) + ")"


class ElementwiseDistribution(Distribution):
    """A distribution of scalar events whose parameters (named by ``_params``, numbers or tensors) are
    broadcast together; its batch shape is theirs (``()`` when all are numbers)."""

    _params: tuple = ()

    def _set_params(self, values, validate_args) -> None:
        for name, value in zip(self._params, broadcast_all(*values)):
            setattr(self, name, value)
        batch_shape = () if all(is_number(v) for v in values) else getattr(self, self._params[0]).shape
        Distribution.__init__(self, batch_shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        owner = next(c for c in type(self).__mro__ if "_params" in c.__dict__)
        new = self._get_checked_instance(owner, _instance)
        batch_shape = tuple(batch_shape)
        for name in self._params:
            setattr(new, name, getattr(self, name).expand(batch_shape))
        return self._finish_expand(new, batch_shape)


class ExponentialFamily(Distribution):
    """A distribution with density ``exp(<t(x), theta> - F(theta) + k(x))``: subclasses give the natural
    parameters ``theta`` (``_natural_params``), the log normalizer ``F`` (``_log_normalizer``) and the
    expected carrier measure ``E[k(x)]`` (``_mean_carrier_measure``), from which the entropy (and the KL
    divergence between two of one family) follow as Bregman divergences."""

    @property
    def _natural_params(self):
        raise NotImplementedError

    def _log_normalizer(self, *natural_params):
        raise NotImplementedError

    @property
    def _mean_carrier_measure(self):
        raise NotImplementedError

    def entropy(self):
        """``F(theta) - <theta, grad F(theta)> - E[k(x)]``."""
        result = -self._mean_carrier_measure
        nparams = [p.detach().requires_grad_() for p in self._natural_params]
        log_normalizer = self._log_normalizer(*nparams)
        gradients = autograd.grad(log_normalizer.sum(), nparams, create_graph=True)
        result = result + log_normalizer
        for nparam, gradient in zip(nparams, gradients):
            result = result - (nparam * gradient).reshape(self._batch_shape + (-1,)).sum(-1)
        return result


def bregman_kl(p, q):
    """KL(p || q) of two distributions of one exponential family: the Bregman divergence of the log
    normalizer between their natural parameters."""
    p_nparams = [nparam.detach().requires_grad_() for nparam in p._natural_params]
    q_nparams = q._natural_params
    log_normalizer = p._log_normalizer(*p_nparams)
    gradients = autograd.grad(log_normalizer.sum(), p_nparams, create_graph=True)
    result = q._log_normalizer(*q_nparams) - log_normalizer
    for p_nparam, q_nparam, gradient in zip(p_nparams, q_nparams, gradients):
        result = result - sum_rightmost((q_nparam - p_nparam) * gradient, len(q.event_shape))
    return result
