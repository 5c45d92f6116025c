"""deepkern.torch: deepkern's kernels as PyTorch custom operators, checked against torch's own ops
(outputs and gradients), torch.library.opcheck, gradcheck, torch.compile and torch.optim.Adam."""

import copy
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
import deepkern.torch as dt  # noqa: E402  (after the skip: it needs torch)

F = torch.nn.functional
DTYPES = [torch.float32, torch.float64]


def close(actual, expected, dtype):
    """Equal to rounding: float64 nearly exactly, float32 to a few ulps of the sums."""
    tol = {torch.float64: 1e-10, torch.float32: 2e-4}[dtype]
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol)


def leaves(*tensors):
    """Copies of the tensors (None stays None) that require grad, for comparing gradients."""
    return [None if t is None else t.detach().clone().requires_grad_(True) for t in tensors]


def same_gradients(fn_ours, fn_torch, inputs, dtype):
    """Outputs and gradients (of a random weighted sum of every output) of the two functions agree."""
    ours, theirs = leaves(*inputs), leaves(*inputs)
    out_ours, out_theirs = fn_ours(*ours), fn_torch(*theirs)
    out_ours = out_ours if isinstance(out_ours, tuple) else (out_ours,)
    out_theirs = out_theirs if isinstance(out_theirs, tuple) else (out_theirs,)
    assert len(out_ours) == len(out_theirs)
    for a, b in zip(out_ours, out_theirs):
        assert a.shape == b.shape and a.dtype == b.dtype
        close(a, b, dtype)
    weights = [torch.randn(a.shape, dtype=dtype) for a in out_ours]
    wanted = [t for t in ours if t is not None]
    grads = torch.autograd.grad(sum((a * w).sum() for a, w in zip(out_ours, weights)), wanted, allow_unused=True)
    expected = torch.autograd.grad(
        sum((b * w).sum() for b, w in zip(out_theirs, weights)), [t for t in theirs if t is not None], allow_unused=True
    )
    for g, e in zip(grads, expected):
        assert (g is None) == (e is None)
        if g is not None:
            close(g, e, dtype)


def strided(t):
    """The same values in a non-contiguous tensor (every other element of a wider one)."""
    wide = torch.empty(t.shape[:-1] + (2 * t.shape[-1],), dtype=t.dtype)
    view = wide[..., ::2]
    view.copy_(t)
    assert not view.is_contiguous() or t.shape[-1] <= 1
    return view


# ---- import -------------------------------------------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_deepkern_does_not_import_torch():
    result = run_python("import sys, deepkern; print('torch' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_import_without_torch_is_a_clear_import_error():
    code = (
        "import sys\nsys.modules['torch'] = None  # as if PyTorch were not installed\nimport deepkern\n"
        "try:\n    import deepkern.torch\nexcept ImportError as err:\n    print('ImportError:', err)\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert "ImportError: deepkern.torch needs PyTorch" in result.stdout


# ---- conv2d -------------------------------------------------------------------------------------

CONV_CASES = [
    # input shape, weight shape, bias, options
    ((2, 3, 9, 8), (4, 3, 3, 3), True, {}),
    ((3, 4, 11, 7), (6, 2, 3, 2), False, {"stride": 2, "padding": (1, 2), "dilation": (2, 1), "groups": 2}),
    ((1, 5, 7, 7), (5, 1, 3, 3), True, {"padding": 1, "groups": 5}),
    ((2, 3, 6, 5), (2, 3, 4, 3), True, {"padding": "same"}),
    ((2, 3, 6, 5), (2, 3, 2, 2), False, {"padding": "valid", "stride": (1, 2)}),
    ((3, 7, 6), (4, 3, 2, 3), True, {"padding": 1}),  # unbatched
    ((0, 3, 5, 5), (2, 3, 3, 3), True, {}),  # zero batch
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, w_shape, has_bias, options", CONV_CASES)
def test_conv2d_matches_torch(dtype, x_shape, w_shape, has_bias, options):
    x, w = torch.randn(x_shape, dtype=dtype), torch.randn(w_shape, dtype=dtype)
    b = torch.randn(w_shape[0], dtype=dtype) if has_bias else None
    same_gradients(
        lambda x, w, b: dt.conv2d(x, w, b, **options), lambda x, w, b: F.conv2d(x, w, b, **options), (x, w, b), dtype
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_non_contiguous_inputs(dtype):
    x = torch.randn(2, 9, 8, 3, dtype=dtype).permute(0, 3, 1, 2)  # channels-last memory
    w = strided(torch.randn(4, 3, 3, 3, dtype=dtype))
    b = strided(torch.randn(4, dtype=dtype))
    assert not x.is_contiguous() and not w.is_contiguous() and not b.is_contiguous()
    same_gradients(
        lambda x, w, b: dt.conv2d(x, w, b, padding=1), lambda x, w, b: F.conv2d(x, w, b, padding=1), (x, w, b), dtype
    )


# ---- matmul and linear --------------------------------------------------------------------------

MATMUL_CASES = [
    ((5,), (5,)),
    ((5,), (5, 3)),
    ((4, 5), (5,)),
    ((7, 5), (5, 3)),
    ((2, 1, 4, 5), (3, 5, 6)),  # batch axes broadcast
    ((3, 4, 5), (5, 2)),
    ((4, 0), (0, 3)),  # K = 0: zeros
    ((0, 5), (5, 3)),
    ((2, 0, 5), (5, 3)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("a_shape, b_shape", MATMUL_CASES)
def test_matmul_matches_torch(dtype, a_shape, b_shape):
    a, b = torch.randn(a_shape, dtype=dtype), torch.randn(b_shape, dtype=dtype)
    same_gradients(dt.matmul, torch.matmul, (a, b), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_strided_inputs(dtype):
    a = torch.randn(3, 6, 5, dtype=dtype).transpose(1, 2)  # (3, 5, 6), transposed in memory
    b = strided(torch.randn(6, 4, dtype=dtype))
    same_gradients(dt.matmul, torch.matmul, (a, b), dtype)


LINEAR_CASES = [((5,), 3, True), ((7, 5), 4, True), ((2, 3, 5), 6, False), ((0, 5), 3, True), ((4, 5), 0, True)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, out_features, has_bias", LINEAR_CASES)
def test_linear_matches_torch(dtype, x_shape, out_features, has_bias):
    x = torch.randn(x_shape, dtype=dtype)
    w = torch.randn(out_features, x_shape[-1], dtype=dtype)
    b = torch.randn(out_features, dtype=dtype) if has_bias else None
    same_gradients(dt.linear, F.linear, (x, w, b), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_strided_inputs(dtype):
    x = strided(torch.randn(2, 3, 5, dtype=dtype)).transpose(0, 1)  # leading axes that do not merge
    w = torch.randn(5, 4, dtype=dtype).t()
    b = strided(torch.randn(4, dtype=dtype))
    same_gradients(dt.linear, F.linear, (x, w, b), dtype)


# ---- LSTM and GRU -------------------------------------------------------------------------------

RNN_CASES = [
    # module options, input shape (as the module takes it)
    ({"input_size": 5, "hidden_size": 7}, (6, 3, 5)),
    ({"input_size": 5, "hidden_size": 4, "num_layers": 2, "bidirectional": True}, (5, 2, 5)),
    ({"input_size": 3, "hidden_size": 6, "batch_first": True, "bias": False}, (2, 7, 3)),
    ({"input_size": 4, "hidden_size": 3, "num_layers": 3, "batch_first": True, "bidirectional": True}, (3, 4, 4)),
    ({"input_size": 5, "hidden_size": 4}, (6, 5)),  # unbatched
    ({"input_size": 5, "hidden_size": 4, "num_layers": 2}, (4, 0, 5)),  # zero batch
]


def module_pair(ours_cls, torch_cls, options, dtype):
    ours = ours_cls(**options).to(dtype)
    theirs = torch_cls(**options).to(dtype)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def functional(module):
    """The module as a function of its input, initial state and parameters, returning every output."""
    names = [name for name, _ in module.named_parameters()]

    def run(input, *state_and_params):
        state, params = state_and_params[: -len(names)], state_and_params[-len(names) :]
        hx = None if not state else (state if len(state) > 1 else state[0])
        output, final = torch.func.functional_call(module, dict(zip(names, params)), (input, hx))
        return (output, *(final if isinstance(final, tuple) else (final,)))

    return run


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options, shape", RNN_CASES)
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("with_state", [False, True])
def test_rnn_modules_match_torch(kind, dtype, options, shape, with_state):
    ours, theirs = module_pair(getattr(dt, kind), getattr(torch.nn, kind), options, dtype)
    x = torch.randn(shape, dtype=dtype)
    state = ()
    if with_state:
        layers = options.get("num_layers", 1) * (2 if options.get("bidirectional") else 1)
        batch = () if len(shape) == 2 else (shape[0] if options.get("batch_first") else shape[1],)
        state_shape = (layers, *batch, options["hidden_size"])
        state = tuple(torch.randn(state_shape, dtype=dtype) for _ in range(2 if kind == "LSTM" else 1))
    params = [p.detach() for p in ours.parameters()]
    same_gradients(functional(ours), functional(theirs), (x, *state, *params), dtype)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_rnn_zero_steps_pass_the_state_through(kind):
    """torch refuses T = 0; deepkern returns an empty output and the initial states (and their gradients)."""
    module = getattr(dt, kind)(3, 4, num_layers=2, bidirectional=True).double()
    states = [f64(4, 2, 4) for _ in range(2 if kind == "LSTM" else 1)]
    output, *finals = functional(module)(f64(0, 2, 3), *states, *module.parameters())
    assert output.shape == (0, 2, 8)
    weights = [torch.randn_like(s) for s in states]
    grads = torch.autograd.grad(sum((f * w).sum() for f, w in zip(finals, weights)), states)
    torch.testing.assert_close(finals, states, rtol=0, atol=0)
    torch.testing.assert_close(list(grads), weights, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_rnn_inference_equals_training_forward(kind):
    module = getattr(dt, kind.upper())(4, 5, num_layers=2, bidirectional=True).double()
    x = torch.randn(6, 3, 4, dtype=torch.float64)
    with torch.no_grad():
        inference = module(x)
    training = module(x)
    assert training[0].requires_grad and not inference[0].requires_grad
    torch.testing.assert_close(inference, training, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_rnn_functional_matches_torch_vf(kind):
    """lstm/gru take torch._VF's arguments: flat params, has_biases, dropout, train, batch_first."""
    module = getattr(torch.nn, kind.upper())(3, 4, num_layers=2, bidirectional=True, batch_first=True).double()
    params = [p for weights in module.all_weights for p in weights]
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    h = torch.randn(4, 2, 4, dtype=torch.float64)
    hx = (h, torch.randn_like(h)) if kind == "lstm" else h
    args = (params, True, 2, 0.0, False, True, True)
    close(getattr(dt, kind)(x, hx, *args), getattr(torch._VF, kind)(x, hx, *args), torch.float64)


def test_lstm_dropout_between_layers_follows_torch_random_stream():
    ours, theirs = module_pair(
        dt.LSTM, torch.nn.LSTM, {"input_size": 3, "hidden_size": 4, "num_layers": 3}, torch.float64
    )
    ours.dropout = theirs.dropout = 0.5
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    torch.manual_seed(1)
    out = ours(x)
    torch.manual_seed(1)
    expected = theirs(x)
    close(out[0], expected[0], torch.float64)
    ours.eval()
    assert not torch.equal(ours(x)[0], out[0])  # no dropout in eval mode


# ---- gradcheck, opcheck, torch.compile ----------------------------------------------------------


def f64(*shape):
    return torch.randn(shape, dtype=torch.float64, requires_grad=True)


def test_gradcheck_float64():
    x, w, b = f64(2, 3, 6, 5), f64(4, 3, 3, 2), f64(4)
    assert torch.autograd.gradcheck(lambda x, w, b: dt.conv2d(x, w, b, stride=2, padding=1, dilation=(1, 2)), (x, w, b))
    assert torch.autograd.gradcheck(dt.matmul, (f64(2, 3, 4), f64(4, 5)))
    assert torch.autograd.gradcheck(dt.matmul, (f64(4), f64(3, 4, 2)))
    assert torch.autograd.gradcheck(dt.linear, (f64(2, 3, 4), f64(5, 4), f64(5)))
    mask = torch.randn(5, 6, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda q, k, v: dt.scaled_dot_product_attention(q, k, v, attn_mask=mask),
        (f64(2, 5, 3), f64(2, 6, 3), f64(6, 2)),
    )
    assert torch.autograd.gradcheck(
        lambda q, k, v, m: dt.scaled_dot_product_attention(q, k, v, attn_mask=m),
        (f64(2, 5, 3), f64(2, 6, 3), f64(6, 2), f64(2, 1, 6)),
    )
    for kind, count in (("LSTM", 2), ("GRU", 1)):
        module = getattr(dt, kind)(3, 4, num_layers=2, bidirectional=True).double()
        run = functional(module)
        state = [f64(4, 2, 4) for _ in range(count)]
        assert torch.autograd.gradcheck(
            run, (f64(3, 2, 3), *state, *(p.detach().requires_grad_() for p in module.parameters()))
        )


def sdpa_backward_args(mask=None):
    """grad, query, key, value, out, lse, mask, dropout_p, is_causal, scale, enable_gqa, seed of one
    forward at scale 0.5 (no grad needed): causal without a mask, else with the float mask."""
    q, k, v = (torch.randn(shape, dtype=torch.float64) for shape in ((2, 5, 4), (2, 6, 4), (2, 6, 3)))
    options = (0.0, mask is None, 0.5, False, 0)
    out, lse = torch.ops.deepkern.scaled_dot_product_attention(q, k, v, mask, *options)
    return torch.randn_like(out), q, k, v, out, lse, mask, *options


def opcheck_cases():
    """One call of every registered operator, inputs requiring grad where they are differentiable."""
    x, w, b = f64(2, 3, 7, 6), f64(4, 3, 3, 2), f64(4)
    conv_options = ([2, 1], [1, 0], [1, 2], 1, False)
    T, B, n_in, H = 4, 3, 5, 6
    lstm_inputs = (f64(T, B, n_in), f64(B, H), f64(B, H), f64(4 * H, n_in), f64(4 * H, H), f64(4 * H), None)
    gru_inputs = (f64(T, B, n_in), f64(B, H), f64(3 * H, n_in), f64(3 * H, H), None, f64(3 * H))
    lstm_cache = torch.ops.deepkern.lstm_layer(*lstm_inputs, False, True)[3:]
    gru_cache = torch.ops.deepkern.gru_layer(*gru_inputs, True, True)[2:]
    plain = [t.detach() for t in (f64(T, B, H), f64(B, H), f64(B, H))]
    params = [torch.randn(5, dtype=torch.float64) for _ in range(2)]
    state = [torch.zeros(5, dtype=torch.float64) for _ in range(6)]
    grads = [torch.randn(5, dtype=torch.float64) for _ in range(2)]
    ops = torch.ops.deepkern
    return {
        "conv2d": (ops.conv2d.default, (x, w, b, *conv_options)),
        "conv2d_same": (ops.conv2d.default, (x, w, None, [1, 1], [0, 0], [1, 1], 1, True)),
        "conv2d_backward": (
            ops.conv2d_backward.default,
            (torch.randn(2, 4, 4, 4, dtype=torch.float64), x.detach(), w.detach(), *conv_options, [True, False, True]),
        ),
        "matmul": (ops.matmul.default, (f64(3, 4, 5), f64(5, 2))),
        "matmul_vector": (ops.matmul.default, (f64(5), f64(2, 5, 3))),
        "linear": (ops.linear.default, (f64(2, 3, 5), f64(4, 5), f64(4))),
        "lstm_layer": (ops.lstm_layer.default, (*lstm_inputs, False, True)),
        "lstm_layer_inference": (ops.lstm_layer.default, (*(t.detach() for t in lstm_inputs[:6]), None, True, False)),
        "lstm_layer_backward": (
            ops.lstm_layer_backward.default,
            (*plain, *(t.detach() for t in lstm_inputs[:5]), *lstm_cache, False),
        ),
        "gru_layer": (ops.gru_layer.default, (*gru_inputs, True, True)),
        "gru_layer_backward": (
            ops.gru_layer_backward.default,
            (plain[0], None, *(t.detach() for t in gru_inputs[:4]), *gru_cache, True),
        ),
        "scaled_dot_product_attention": (
            ops.scaled_dot_product_attention.default,
            (f64(2, 3, 5, 4), f64(2, 3, 6, 4), f64(2, 3, 6, 3), torch.rand(5, 6) > 0.3, 0.0, False, None, False, 0),
        ),
        "scaled_dot_product_attention_float_mask": (
            ops.scaled_dot_product_attention.default,
            (f64(2, 3, 5, 4), f64(2, 3, 6, 4), f64(2, 3, 6, 3), f64(3, 1, 6), 0.0, False, None, False, 0),
        ),
        "scaled_dot_product_attention_backward": (
            ops.scaled_dot_product_attention_backward.default,
            (*sdpa_backward_args(), False),
        ),
        "scaled_dot_product_attention_backward_mask_grad": (
            ops.scaled_dot_product_attention_backward.default,
            (*sdpa_backward_args(torch.randn(2, 1, 6, dtype=torch.float64)), True),
        ),
        "adam_": (
            ops.adam_.default,
            (params, grads, state[:2], state[2:4], [], [3, 1], 1e-2, 0.9, 0.99, 1e-8, 0.1, False, False, False),
        ),
        "adam_amsgrad": (
            ops.adam_.default,
            (params, grads, state[:2], state[2:4], state[4:], [2, 2], 1e-2, 0.8, 0.9, 1e-6, 0.0, True, True, True),
        ),
    }


@pytest.mark.parametrize("case", sorted(opcheck_cases()))
def test_opcheck(case):
    op, args = opcheck_cases()[case]
    results = torch.library.opcheck(op, args)
    assert set(results) == {"test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic"}
    assert all(value == "SUCCESS" for value in results.values()), results


def test_every_operator_has_an_opcheck_case():
    registered = {
        name
        for name in dir(torch.ops.deepkern)
        if not name.startswith("_") and hasattr(getattr(torch.ops.deepkern, name), "default")
    }
    checked = {op.name().split("::")[1] for op, _ in opcheck_cases().values()}
    assert registered == checked


def compile_cases():
    lstm = dt.LSTM(4, 5, num_layers=2, bidirectional=True, batch_first=True).double()
    gru = dt.GRU(4, 5, bias=False).double()
    return {
        "conv2d": (lambda x, w, b: dt.conv2d(x, w, b, padding=1, groups=2), (f64(2, 4, 6, 5), f64(6, 2, 3, 3), f64(6))),
        "matmul": (dt.matmul, (f64(2, 3, 4), f64(4, 5))),
        "linear": (dt.linear, (f64(3, 4), f64(2, 4), f64(2))),
        "lstm": (lambda x: lstm(x)[0], (f64(3, 6, 4),)),
        "gru": (lambda x: gru(x)[1], (f64(6, 3, 4),)),
        "scaled_dot_product_attention": (
            lambda q, k, v: dt.scaled_dot_product_attention(q, k, v, is_causal=True),
            (f64(2, 2, 5, 4), f64(2, 2, 7, 4), f64(2, 2, 7, 3)),
        ),
        "scaled_dot_product_attention_float_mask": (
            lambda q, k, v, m: dt.scaled_dot_product_attention(q, k, v, attn_mask=m),
            (f64(2, 2, 5, 4), f64(2, 2, 7, 4), f64(2, 2, 7, 3), f64(5, 7)),
        ),
    }


@pytest.mark.parametrize("case", sorted(compile_cases()))
def test_compile_keeps_the_op_opaque_and_equal(case):
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    fn, inputs = compile_cases()[case]
    graphs = []

    def keep(gm, example_inputs):
        graphs.append({str(node.target) for node in gm.graph.nodes if node.op == "call_function"})
        return make_boxed_func(gm.forward)

    torch._dynamo.reset()
    expected = fn(*inputs)
    expected_grads = torch.autograd.grad(expected.sum(), inputs)
    for backend in ("aot_eager", aot_autograd(fw_compiler=keep, bw_compiler=keep)):
        out = torch.compile(fn, backend=backend, fullgraph=True)(*inputs)
        torch.testing.assert_close(out, expected, rtol=0, atol=0)
        grads = torch.autograd.grad(out.sum(), inputs)
        torch.testing.assert_close(grads, expected_grads, rtol=0, atol=0)
    forward, backward = graphs
    assert any(target.startswith("deepkern.") for target in forward), forward
    assert any(target.startswith("deepkern.") for target in backward), backward  # the backward kernels too
    assert not any(
        target.startswith("aten.convolution") or target.startswith("aten.mm") for target in forward | backward
    )


def test_compile_adam_step():
    params = [torch.randn(7, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)]
    grads = [torch.randn_like(p) for p in params]
    state = [torch.zeros_like(p) for p in params * 2]

    def step(params, grads, m, v):
        dt.adam_(params, grads, m, v, step=1, lr=0.1)

    eager = [[t.clone() for t in ts] for ts in (params, state[:2], state[2:])]
    step(eager[0], grads, eager[1], eager[2])
    torch._dynamo.reset()
    torch.compile(step, backend="aot_eager", fullgraph=True)(params, grads, state[:2], state[2:])
    torch.testing.assert_close([params, state[:2], state[2:]], eager, rtol=0, atol=0)


# ---- the Adam step ------------------------------------------------------------------------------

ADAM_CASES = [
    {},
    {"weight_decay": 0.1, "amsgrad": True},
    {"lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-6, "maximize": True},
    {"weight_decay": 0.01, "decoupled_weight_decay": True},
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", ADAM_CASES)
def test_adam_optimizer_matches_torch(dtype, options):
    shapes = [(5,), (3, 7), (1,), (0, 4), (2, 3, 4)]
    ours = [torch.randn(s, dtype=dtype, requires_grad=True) for s in shapes]
    theirs = leaves(*ours)
    opt = dt.optim.Adam(ours, **options)
    expected_opt = torch.optim.Adam(theirs, foreach=False, **options)
    pointers = [p.data_ptr() for p in ours]
    for _ in range(5):
        for a, b in zip(ours, theirs):
            g = torch.randn(a.shape, dtype=dtype)
            a.grad, b.grad = g.clone(), g.clone()
        opt.step()
        expected_opt.step()
        close(ours, theirs, dtype)
    assert [p.data_ptr() for p in ours] == pointers  # in place
    for a, b in zip(ours, theirs):
        assert set(opt.state[a]) == set(expected_opt.state[b])
        close(opt.state[a]["step"], expected_opt.state[b]["step"], torch.float32)
        close(opt.state[a]["exp_avg_sq"], expected_opt.state[b]["exp_avg_sq"], dtype)


def test_adam_optimizer_takes_a_group_of_two_dtypes_and_a_refused_step_counts_nothing():
    """A group mixing float32 and float64 parameters steps as torch.optim.Adam's; a step the kernel
    refuses (a non-contiguous parameter) leaves every state as it was, step counts included."""
    ours = [torch.randn(3, requires_grad=True), torch.randn(2, dtype=torch.float64, requires_grad=True)]
    theirs = leaves(*ours)
    opt, expected_opt = dt.optim.Adam(ours, lr=0.1), torch.optim.Adam(theirs, lr=0.1, foreach=False)
    for _ in range(3):
        for a, b in zip(ours, theirs):
            g = torch.randn(a.shape, dtype=a.dtype)
            a.grad, b.grad = g.clone(), g.clone()
        opt.step()
        expected_opt.step()
    for a, b in zip(ours, theirs):
        close([a], [b], a.dtype)
        assert opt.state[a]["step"].item() == 3
    strided = torch.randn(4, 6)[:, ::2].requires_grad_()
    plain = torch.randn(3, requires_grad=True)
    refused = dt.optim.Adam([plain, strided], lr=0.1)
    plain.grad, strided.grad = torch.ones(3), torch.ones(4, 3)
    before = plain.detach().clone()
    for _ in range(2):
        with pytest.raises(ValueError):
            refused.step()
    assert torch.equal(plain, before) and all(refused.state[p]["step"].item() == 0 for p in (plain, strided))


def test_adam_optimizer_loads_torch_state_and_closure():
    model = torch.nn.Linear(4, 3).double()
    theirs = torch.nn.Linear(4, 3).double()
    theirs.load_state_dict(model.state_dict())
    x, y = torch.randn(8, 4, dtype=torch.float64), torch.randn(8, 3, dtype=torch.float64)
    torch_opt = torch.optim.Adam(theirs.parameters(), lr=0.01, foreach=False)
    for step in range(3):

        def closure(net=theirs, opt=torch_opt):
            opt.zero_grad()
            loss = F.mse_loss(net(x), y)
            loss.backward()
            return loss

        torch_opt.step(closure)
        if step == 0:  # take over torch's state after one step
            model.load_state_dict(theirs.state_dict())
            ours = dt.optim.Adam(model.parameters(), lr=0.01)
            ours.load_state_dict(copy.deepcopy(torch_opt.state_dict()))  # not torch's own state tensors
            continue

        def our_closure(ours=ours):
            ours.zero_grad()
            loss = F.mse_loss(model(x), y)
            loss.backward()
            return loss

        loss = ours.step(our_closure)
        assert loss is not None
        close(list(model.parameters()), list(theirs.parameters()), torch.float64)


def test_adam_functional_updates_in_place():
    p = torch.randn(6, dtype=torch.float64)
    g = strided(torch.randn(6, dtype=torch.float64))  # a non-contiguous grad is copied, not refused
    m, v = torch.zeros(6, dtype=torch.float64), torch.zeros(6, dtype=torch.float64)
    expected = leaves(p)[0]
    ref = torch.optim.Adam([expected], lr=0.1, foreach=False)
    expected.grad = g.clone()
    ref.step()
    version = p._version
    dt.adam_([p], [g], [m], [v], step=1, lr=0.1)
    close(p, expected.detach(), torch.float64)
    assert p._version > version  # autograd sees the in-place write


# ---- bad input ----------------------------------------------------------------------------------


def expect(error, fn, *words):
    with pytest.raises(error) as info:
        fn()
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_conv2d_bad_input():
    x, w = torch.randn(2, 3, 6, 6), torch.randn(4, 3, 3, 3)
    expect(ValueError, lambda: dt.conv2d(x[0, 0], w), "deepkern.torch.conv2d", "input", "(6, 6)")
    expect(ValueError, lambda: dt.conv2d(x, w[0]), "weight", "(3, 3, 3)")
    expect(ValueError, lambda: dt.conv2d(x, torch.randn(4, 2, 3, 3)), "input", "C=3", "weight", "(4, 2, 3, 3)")
    expect(ValueError, lambda: dt.conv2d(x, w, torch.randn(3)), "bias", "(4,)", "(3,)")
    expect(TypeError, lambda: dt.conv2d(x, w.double()), "weight", "torch.float64", "torch.float32")
    expect(TypeError, lambda: dt.conv2d(x.half(), w.half()), "input", "float16")
    expect(TypeError, lambda: dt.conv2d(x.numpy(), w), "input", "torch.Tensor", "ndarray")
    expect(ValueError, lambda: dt.conv2d(x, w, padding="full"), "padding", "'full'")
    expect(ValueError, lambda: dt.conv2d(x, w, stride=0), "stride")
    expect(ValueError, lambda: dt.conv2d(x, w, groups=2), "groups=2")
    expect(ValueError, lambda: dt.conv2d(x, w, padding="same", stride=2), "same", "stride")
    expect(ValueError, lambda: dt.conv2d(x[..., :2, :2], w), "output size")


def test_other_devices_are_not_implemented():
    x = torch.empty(2, 3, 6, 6, device="meta")
    expect(NotImplementedError, lambda: dt.conv2d(x, x), "deepkern.torch.conv2d", "input", "meta")
    expect(NotImplementedError, lambda: dt.matmul(torch.randn(2, 2), x[0, 0]), "matmul", "other", "meta")
    expect(NotImplementedError, lambda: dt.adam_([x], [x], [x], [x], step=1), "adam_", "params[0]", "meta")


def test_matmul_and_linear_bad_input():
    expect(ValueError, lambda: dt.matmul(torch.randn(3, 4), torch.randn(5, 2)), "input", "(3, 4)", "other", "(5, 2)")
    expect(ValueError, lambda: dt.matmul(torch.randn(2, 3, 4), torch.randn(3, 4, 2)), "batch", "broadcast")
    expect(ValueError, lambda: dt.matmul(torch.tensor(1.0), torch.randn(2)), "at least 1 dimension")
    expect(TypeError, lambda: dt.matmul(torch.randn(2, 2), torch.randn(2, 2).double()), "other", "float64")
    expect(ValueError, lambda: dt.linear(torch.randn(3, 4), torch.randn(2, 5)), "input", "in_features=5")
    expect(ValueError, lambda: dt.linear(torch.randn(3, 4), torch.randn(2, 4), torch.randn(3)), "bias", "(2,)")
    expect(ValueError, lambda: dt.linear(torch.randn(3, 4), torch.randn(4)), "weight", "2-D")


def test_rnn_bad_input():
    module = torch.nn.LSTM(3, 4, num_layers=2)
    params = [p for weights in module.all_weights for p in weights]
    x = torch.randn(5, 2, 3)
    expect(ValueError, lambda: dt.lstm(x, None, params[:6], num_layers=2), "params", "8", "6 tensors")
    bad = list(params)
    bad[4] = torch.randn(16, 3)
    expect(ValueError, lambda: dt.lstm(x, None, bad, num_layers=2), "weight_ih_l1", "(16, 4)", "(16, 3)")
    h = torch.randn(2, 3, 4)
    expect(ValueError, lambda: dt.lstm(x, (h, h), params, num_layers=2), "hx[0]", "(2, 2, 4)", "(2, 3, 4)")
    expect(ValueError, lambda: dt.lstm(x[0], None, params, num_layers=2), "input", "3-D")
    expect(TypeError, lambda: dt.lstm(x.double(), None, params, num_layers=2), "weight_hh_l0", "float32")
    expect(ValueError, lambda: dt.gru(x, None, params[:4]), "weight_ih_l0", "(12, 3)")
    expect(NotImplementedError, lambda: dt.LSTM(3, 4, proj_size=2), "proj_size")
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, [5, 3])
    expect(NotImplementedError, lambda: dt.GRU(3, 4)(packed), "PackedSequence")


def test_rnn_layer_without_cache_refuses_backward():
    x = f64(3, 2, 4)
    w_ih, w_hh = f64(20, 4), f64(20, 5)
    zeros = torch.zeros(2, 5, dtype=torch.float64)
    y = torch.ops.deepkern.lstm_layer(x, zeros, zeros, w_ih, w_hh, None, None, False, False)[0]
    expect(RuntimeError, lambda: y.sum().backward(), "need_cache=True")


def test_adam_bad_input():
    p = torch.randn(3, 4)
    state = [torch.zeros(3, 4), torch.zeros(3, 4)]
    expect(
        ValueError,
        lambda: dt.adam_([p.t()], [p.t()], [state[0].t()], [state[1].t()], step=1),
        "params[0]",
        "contiguous",
    )
    expect(ValueError, lambda: dt.adam_([p], [p, p], state[:1], state[1:], step=1), "grads", "2 tensors")
    expect(ValueError, lambda: dt.adam_([p], [p[:2]], state[:1], state[1:], step=1), "grads[0]", "(2, 4)")
    expect(TypeError, lambda: dt.adam_(p, [p], state[:1], state[1:], step=1), "params", "list of tensors")
    expect(TypeError, lambda: dt.adam_([p], [p.double()], state[:1], state[1:], step=1), "grads[0]", "float64")
    expect(ValueError, lambda: dt.adam_([p], [p], state[:1], state[1:], step=1, lr=-1.0), "lr", "-1.0")
    expect(ValueError, lambda: dt.adam_([p], [p], state[:1], state[1:], step=0), "step", "0")
    expect(TypeError, lambda: dt.adam_([p], [p], state[:1], state[1:], step="1"), "step")
    expect(ValueError, lambda: dt.adam_([p], [p], state[:1], state[1:], step=1, amsgrad=True), "max_exp_avg_sqs")
    expect(ValueError, lambda: dt.optim.Adam([p], betas=(0.9, 1.0)), "betas[1]")


# ---- scaled dot-product attention ---------------------------------------------------------------

SDPA_CASES = {
    "plain": ((2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 6), {}),
    "causal": ((2, 3, 9, 8), (2, 3, 6, 8), (2, 3, 6, 8), {"is_causal": True}),
    "bool_mask": ((2, 1, 5, 4), (2, 1, 70, 4), (2, 1, 70, 3), {"attn_mask": "bool"}),
    "float_mask_scale": ((3, 17, 5), (3, 33, 5), (3, 33, 2), {"attn_mask": "float", "scale": 0.3}),
    "gqa": ((1, 4, 6, 8), (1, 2, 6, 8), (1, 2, 6, 8), {"enable_gqa": True}),
    "broadcast_2d_key": ((2, 3, 5, 4), (7, 4), (7, 4), {}),
    "zero_batch": ((0, 2, 5, 4), (0, 2, 5, 4), (0, 2, 5, 4), {}),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(SDPA_CASES))
def test_scaled_dot_product_attention_matches_torch(case, dtype):
    q_shape, k_shape, v_shape, options = SDPA_CASES[case]
    options = dict(options)
    if options.get("attn_mask") == "bool":
        options["attn_mask"] = torch.rand(q_shape[-2], k_shape[-2]) > 0.4
    elif options.get("attn_mask") == "float":
        options["attn_mask"] = torch.randn(q_shape[-2], k_shape[-2], dtype=dtype)
    q, k, v = (torch.randn(shape, dtype=dtype) for shape in (q_shape, k_shape, v_shape))

    def ours(q, k, v):
        return dt.scaled_dot_product_attention(q, k, v, **options)

    def theirs(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, **options)

    same_gradients(ours, theirs, (q, k, v), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mask_shape", [(9, 13), (2, 1, 9, 13), (3, 9, 1), (1, 13)], ids=str)
def test_scaled_dot_product_attention_float_mask_gradient_matches_torch(mask_shape, dtype):
    """A float mask that requires grad gets torch's gradient, summed over its broadcast dims."""
    q, k, v = (torch.randn(shape, dtype=dtype) for shape in ((2, 3, 9, 8), (2, 3, 13, 8), (2, 3, 13, 5)))
    mask = torch.randn(mask_shape, dtype=dtype)
    if mask_shape[-1] > 1:  # some keys masked out (a one-key mask would mask whole rows)
        mask = mask.masked_fill(torch.rand(mask_shape) < 0.2, float("-inf"))

    def ours(q, k, v, m):
        return dt.scaled_dot_product_attention(q, k, v, attn_mask=m)

    def theirs(q, k, v, m):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=m)

    same_gradients(ours, theirs, (q, k, v, mask), dtype)


def test_scaled_dot_product_attention_mask_gradient_only_when_asked():
    """A mask that does not require grad gets none, and the backward operator is told so."""
    q, k, v = (torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = torch.randn(5, 5, dtype=torch.float64)
    dt.scaled_dot_product_attention(q, k, v, attn_mask=mask).sum().backward()
    assert mask.grad is None and q.grad is not None
    out, lse = torch.ops.deepkern.scaled_dot_product_attention(q, k, v, mask, 0.0, False, None, False, 0)
    args = (torch.ones_like(out), q, k, v, out, lse, mask, 0.0, False, None, False, 0)
    *grads, none = torch.ops.deepkern.scaled_dot_product_attention_backward(*args, False)
    *same, dmask = torch.ops.deepkern.scaled_dot_product_attention_backward(*args, True)
    assert none.numel() == 0 and dmask.shape == mask.shape
    for a, b in zip(grads, same):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_scaled_dot_product_attention_reads_strided_operands():
    """q, k, v as (B, L, H, E) tensors transposed to (B, H, L, E), as attention layers make them."""
    q, k, v = (torch.randn(2, 6, 3, 4).transpose(1, 2) for _ in range(3))
    assert not q.is_contiguous()
    same_gradients(dt.scaled_dot_product_attention, F.scaled_dot_product_attention, (q, k, v), torch.float32)


def test_scaled_dot_product_attention_dropout_repeats_under_manual_seed():
    q, k, v = (torch.randn(2, 8, 16, dtype=torch.float64, requires_grad=True) for _ in range(3))
    torch.manual_seed(3)
    first = dt.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    torch.manual_seed(3)
    again = dt.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.allclose(first, dt.scaled_dot_product_attention(q, k, v, dropout_p=0.5))
    assert not torch.allclose(first, dt.scaled_dot_product_attention(q, k, v))

    # the backward sees the forward's mask: finite differences through one fixed seed
    def fixed(q, k, v):
        torch.manual_seed(3)
        return dt.scaled_dot_product_attention(q, k, v, dropout_p=0.5)

    assert torch.autograd.gradcheck(fixed, (q, k, v))


def test_scaled_dot_product_attention_refuses_bad_arguments():
    q = torch.randn(2, 5, 4)
    with pytest.raises(TypeError, match="key"):
        dt.scaled_dot_product_attention(q, q.double(), q)
    with pytest.raises(ValueError, match="key"):
        dt.scaled_dot_product_attention(q, torch.randn(2, 5, 3), q)
    with pytest.raises(TypeError, match="attn_mask"):
        dt.scaled_dot_product_attention(q, q, q, attn_mask=torch.ones(5, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match="is_causal"):
        dt.scaled_dot_product_attention(q, q, q, attn_mask=torch.ones(5, 5, dtype=torch.bool), is_causal=True)
    with pytest.raises(NotImplementedError, match="meta"):
        dt.scaled_dot_product_attention(q.to("meta"), q, q)
