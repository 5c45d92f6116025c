"""nn.MultiheadAttention and the Transformer layers: outputs and every parameter's gradient against
PyTorch with the same weights (loaded from its state dict) for each mask kind, layout and option;
one MultiheadAttention forward against an independent float64 NumPy reference; finite differences
through an encoder layer; dropout by its statistics; bad arguments."""

from __future__ import annotations

import math

import deepkern
import numpy as np
import pytest
from deepkern import nn

from checks import check, gradcheck, raises_naming, shape_pattern
from conftest import to_host

# PyTorch's note that its encoder's nested-tensor fast path is off (deepkern has none)
pytestmark = pytest.mark.filterwarnings("ignore:enable_nested_tensor is True:UserWarning")

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
TOL = {F32: 5e-5, F64: 1e-10}


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


# ----------------------------------------------------------------------------------------------
# the same module in PyTorch and deepkern


def pair(torch, name, *args, dtype=F64, **kwargs):
    """``torch.nn.<name>`` with random weights (biases too: PyTorch starts some at zero) and
    ``deepkern.nn.<name>`` holding the same state dict."""
    torch.manual_seed(0)
    tm = getattr(torch.nn, name)(*args, **kwargs).to(getattr(torch, dtype.name))
    with torch.no_grad():
        for p in tm.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    dm = getattr(nn, name)(*args, **kwargs, dtype=dtype)
    missing, unexpected = dm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    assert missing == [] and unexpected == []
    return tm, dm


def as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


def compare(torch, tm, dm, inputs, dtype=F64, device="cpu", **kwargs):
    """Runs both modules on the float ``inputs`` (positional; the same array twice is the same
    tensor, as in self-attention) and ``kwargs`` (masks as NumPy arrays, flags); checks every
    output, then the gradients of a random weighting of the outputs with respect to the inputs and
    every parameter. Returns deepkern's outputs."""
    rng = np.random.default_rng(1)
    t_in, d_in = {}, {}
    for a in inputs:
        if id(a) not in t_in:
            t_in[id(a)] = torch.tensor(a, requires_grad=True)
            d_in[id(a)] = deepkern.tensor(a, requires_grad=True, device=device)
    t_kw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    d_kw = {k: deepkern.tensor(v, device=device) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    t_out = as_tuple(tm(*(t_in[id(a)] for a in inputs), **t_kw))
    d_out = as_tuple(dm(*(d_in[id(a)] for a in inputs), **d_kw))
    assert len(t_out) == len(d_out)
    t_loss = d_loss = 0
    for k, (t, d) in enumerate(zip(t_out, d_out)):
        if t is None:
            assert d is None, f"output {k}: expected None"
            continue
        check(to_host(d.detach()._array), t.detach().numpy().astype(np.float64), dtype, f"output {k}", tol=TOL[dtype])
        w = rng.standard_normal(t.shape)
        t_loss = t_loss + (t * torch.tensor(w, dtype=t.dtype)).sum()
        d_loss = d_loss + (d * deepkern.tensor(w, dtype=dtype, device=device)).sum()
    t_loss.backward()
    d_loss.backward()
    for k, key in enumerate(t_in):
        check(to_host(d_in[key].grad._array), t_in[key].grad.numpy(), dtype, f"grad of input {k}", tol=TOL[dtype])
    t_params = dict(tm.named_parameters())
    for name, p in dm.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        check(to_host(p.grad._array), t_params[name].grad.numpy(), dtype, f"grad of {name}", tol=TOL[dtype])
    return d_out


def bool_mask(rng, shape, keep_first=True):
    """A random boolean mask (True = masked out) that leaves the first key of each row free, so
    that no row is masked out entirely."""
    m = rng.random(shape) < 0.4
    if keep_first:
        m[..., 0] = False
    return m


def float_mask(rng, shape):
    return np.where(bool_mask(rng, shape), -1e9, rng.standard_normal(shape))


# ----------------------------------------------------------------------------------------------
# MultiheadAttention against PyTorch

E, H, N, L, S = 8, 2, 3, 4, 5

MHA_OPTIONS = {
    "default": {},
    "batch_first": dict(batch_first=True),
    "kdim_vdim": dict(kdim=5, vdim=3),
    "add_bias_kv": dict(add_bias_kv=True),
    "add_zero_attn": dict(add_zero_attn=True),
    "bias_kv_zero_attn_kdim": dict(add_bias_kv=True, add_zero_attn=True, kdim=6, vdim=7, batch_first=True),
    "no_bias": dict(bias=False),
    "four_heads": dict(num_heads=4),
}


def mha_inputs(rng, m, batch_first, dtype):
    n_dims = (N, L), (N, S)
    if not batch_first:
        n_dims = tuple(d[::-1] for d in n_dims)
    q = rng.standard_normal((*n_dims[0], m.embed_dim)).astype(dtype)
    k = rng.standard_normal((*n_dims[1], m.kdim)).astype(dtype)
    v = rng.standard_normal((*n_dims[1], m.vdim)).astype(dtype)
    return q, k, v


@pytest.mark.parametrize("dtype", [F64, F32])
@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("options", list(MHA_OPTIONS), ids=list(MHA_OPTIONS))
def test_mha_matches_torch(torch, rng, options, need_weights, dtype):
    kw = dict(MHA_OPTIONS[options])
    heads = kw.pop("num_heads", H)
    tm, dm = pair(torch, "MultiheadAttention", E, heads, dtype=dtype, **kw)
    q, k, v = mha_inputs(rng, dm, dm.batch_first, dtype)
    compare(
        torch,
        tm,
        dm,
        (q, k, v),
        dtype,
        key_padding_mask=float_mask(rng, (N, S)).astype(dtype),
        attn_mask=float_mask(rng, (L, S)).astype(dtype),
        need_weights=need_weights,
    )


MASKS = {
    "none": lambda rng: {},
    "kpm_bool": lambda rng: dict(key_padding_mask=bool_mask(rng, (N, S))),
    "kpm_float": lambda rng: dict(key_padding_mask=float_mask(rng, (N, S))),
    "attn2d_bool": lambda rng: dict(attn_mask=bool_mask(rng, (L, S))),
    "attn2d_float": lambda rng: dict(attn_mask=float_mask(rng, (L, S))),
    "attn3d_bool": lambda rng: dict(attn_mask=bool_mask(rng, (N * H, L, S))),
    "attn3d_float": lambda rng: dict(attn_mask=float_mask(rng, (N * H, L, S))),
    "both_bool": lambda rng: dict(key_padding_mask=bool_mask(rng, (N, S)), attn_mask=bool_mask(rng, (N * H, L, S))),
    "causal_hint": lambda rng: dict(attn_mask=np.triu(np.ones((L, S), bool), 1), is_causal=True),
    "causal_hint_kpm": lambda rng: dict(
        attn_mask=np.triu(np.ones((L, S), bool), 1), is_causal=True, key_padding_mask=bool_mask(rng, (N, S))
    ),
}


@pytest.mark.parametrize("average", [True, False])
@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("mask", list(MASKS), ids=list(MASKS))
def test_mha_masks_match_torch(torch, rng, mask, need_weights, average):
    tm, dm = pair(torch, "MultiheadAttention", E, H)
    q, k, v = mha_inputs(rng, dm, False, F64)
    out = compare(torch, tm, dm, (q, k, v), need_weights=need_weights, average_attn_weights=average, **MASKS[mask](rng))
    if need_weights:
        assert out[1].shape == ((N, L, S) if average else (N, H, L, S))


def test_mha_self_attention_and_mixed_mask_types(torch, rng):
    # query is key is value (one packed projection); a bool padding mask beside a float attn_mask
    # warns as PyTorch does
    tm, dm = pair(torch, "MultiheadAttention", E, H, batch_first=True)
    x = rng.standard_normal((N, L, E))
    with pytest.warns(UserWarning, match="mismatched key_padding_mask and attn_mask"):
        compare(torch, tm, dm, (x, x, x), key_padding_mask=bool_mask(rng, (N, L)), attn_mask=float_mask(rng, (L, L)))


@pytest.mark.parametrize("need_weights", [True, False])
def test_mha_unbatched(torch, rng, need_weights):
    tm, dm = pair(torch, "MultiheadAttention", E, H, add_bias_kv=True, batch_first=True)
    q, k = rng.standard_normal((L, E)), rng.standard_normal((S, E))
    out = compare(
        torch,
        tm,
        dm,
        (q, k, k),
        key_padding_mask=bool_mask(rng, (S,)),
        attn_mask=bool_mask(rng, (H, L, S)),
        need_weights=need_weights,
        average_attn_weights=False,
    )
    assert out[0].shape == (L, E)


def test_mha_eval_mode_and_zero_sizes(torch, rng):
    tm, dm = pair(torch, "MultiheadAttention", E, H, dropout=0.3)
    tm.eval(), dm.eval()
    q, k, v = mha_inputs(rng, dm, False, F64)
    compare(torch, tm, dm, (q, k, v), key_padding_mask=bool_mask(rng, (N, S)))
    compare(torch, tm, dm, (q[:, :0], k[:, :0], v[:, :0]))  # an empty batch
    out, weights = dm(*(deepkern.tensor(x) for x in (q[:0], k, v)))  # no queries
    assert out.shape == (0, N, E) and weights.shape == (N, 0, S)


def test_mha_runs_on_the_inputs_device(torch, rng, device):
    tm, dm = pair(torch, "MultiheadAttention", E, H, add_zero_attn=True)
    dm.to(device)
    q, k, v = mha_inputs(rng, dm, False, F64)
    for need_weights in (True, False):
        out = compare(torch, tm, dm, (q, k, v), device=device, need_weights=need_weights, **MASKS["both_bool"](rng))
        assert all(o.device == deepkern.device(device) for o in out if o is not None)
        dm.zero_grad(), tm.zero_grad()


def test_transformer_runs_on_the_inputs_device(torch, rng, device):
    tm, dm = pair(torch, "Transformer", D, H, 1, 1, FF, dropout=0.0, batch_first=True, activation="gelu")
    dm.to(device)
    src, tgt = seq(rng, S, True), seq(rng, L, True)
    causal = np.triu(np.full((L, L), -np.inf), 1)
    out = compare(
        torch, tm, dm, (src, tgt), device=device, tgt_mask=causal, src_key_padding_mask=bool_mask(rng, (N, S))
    )
    assert out[0].device == deepkern.device(device)


# ----------------------------------------------------------------------------------------------
# MultiheadAttention against a float64 NumPy reference


def mha_reference(q, k, v, params, num_heads, key_padding_mask=None, attn_mask=None):
    """Multi-head attention over seq-first q ``(L, N, E)``, k and v ``(S, N, E)``, from the
    definition: per batch element and head, softmax((x Wq^T + bq)(y Wk^T + bk)^T / sqrt(d) + mask)
    (z Wv^T + bv), heads concatenated, then the output projection. Boolean masks: True = masked."""
    wq, wk, wv = np.split(params["in_proj_weight"], 3)
    bq, bk, bv = np.split(params["in_proj_bias"], 3)
    length, n, e = q.shape
    d = e // num_heads
    out = np.zeros((length, n, e))
    weights = np.zeros((n, length, k.shape[0]))
    for b in range(n):
        qb, kb, vb = q[:, b] @ wq.T + bq, k[:, b] @ wk.T + bk, v[:, b] @ wv.T + bv
        heads = []
        for h in range(num_heads):
            cols = slice(h * d, (h + 1) * d)
            scores = qb[:, cols] @ kb[:, cols].T / math.sqrt(d)
            if attn_mask is not None:
                scores = np.where(attn_mask, -np.inf, scores)
            if key_padding_mask is not None:
                scores = np.where(key_padding_mask[b][None, :], -np.inf, scores)
            p = np.exp(scores - scores.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            weights[b] += p / num_heads
            heads.append(p @ vb[:, cols])
        out[:, b] = np.concatenate(heads, axis=1) @ params["out_proj.weight"].T + params["out_proj.bias"]
    return out, weights


@pytest.mark.parametrize("need_weights", [True, False])
def test_mha_matches_numpy_reference(rng, need_weights):
    m = nn.MultiheadAttention(6, 3, dtype=F64)
    params = {name: rng.standard_normal(p.shape) for name, p in m.state_dict().items()}
    m.load_state_dict(params)
    q, k, v = rng.standard_normal((4, 2, 6)), rng.standard_normal((7, 2, 6)), rng.standard_normal((7, 2, 6))
    kpm, am = bool_mask(rng, (2, 7)), bool_mask(rng, (4, 7))
    ref_out, ref_w = mha_reference(q, k, v, params, 3, kpm, am)
    out, w = m(*(deepkern.tensor(x) for x in (q, k, v)), key_padding_mask=deepkern.tensor(kpm),
               attn_mask=deepkern.tensor(am), need_weights=need_weights)  # fmt: skip
    check(out.detach().numpy(), ref_out, F64, "output")
    if need_weights:
        check(w.detach().numpy(), ref_w, F64, "weights")
    else:
        assert w is None


# ----------------------------------------------------------------------------------------------
# the Transformer layers against PyTorch

D, FF = 8, 12

LAYER_OPTIONS = {
    "default": {},
    "batch_first": dict(batch_first=True),
    "norm_first": dict(norm_first=True),
    "gelu": dict(activation="gelu"),
    "no_bias": dict(bias=False, layer_norm_eps=1e-3),
    "norm_first_gelu_batch_first": dict(norm_first=True, activation="gelu", batch_first=True),
}


def seq(rng, length, batch_first, dtype=F64, batched=True):
    shape = ((N, length) if batch_first else (length, N)) if batched else (length,)
    return rng.standard_normal((*shape, D)).astype(dtype)


@pytest.mark.parametrize("dtype", [F64, F32])
@pytest.mark.parametrize("options", list(LAYER_OPTIONS), ids=list(LAYER_OPTIONS))
def test_encoder_layer_matches_torch(torch, rng, options, dtype):
    kw = LAYER_OPTIONS[options]
    tm, dm = pair(torch, "TransformerEncoderLayer", D, H, FF, dropout=0.0, dtype=dtype, **kw)
    src = seq(rng, S, dm.self_attn.batch_first, dtype)
    compare(torch, tm, dm, (src,), dtype, src_key_padding_mask=bool_mask(rng, (N, S)))
    compare(torch, tm, dm, (src,), dtype, src_mask=float_mask(rng, (S, S)).astype(dtype))


@pytest.mark.parametrize("dtype", [F64, F32])
@pytest.mark.parametrize("options", list(LAYER_OPTIONS), ids=list(LAYER_OPTIONS))
def test_decoder_layer_matches_torch(torch, rng, options, dtype):
    kw = LAYER_OPTIONS[options]
    tm, dm = pair(torch, "TransformerDecoderLayer", D, H, FF, dropout=0.0, dtype=dtype, **kw)
    batch_first = dm.self_attn.batch_first
    tgt, memory = seq(rng, L, batch_first, dtype), seq(rng, S, batch_first, dtype)
    compare(
        torch,
        tm,
        dm,
        (tgt, memory),
        dtype,
        tgt_mask=np.triu(np.ones((L, L), bool), 1),
        memory_mask=float_mask(rng, (N * H, L, S)).astype(dtype),
        tgt_key_padding_mask=bool_mask(rng, (N, L)),
        memory_key_padding_mask=float_mask(rng, (N, S)).astype(dtype),
        tgt_is_causal=True,
    )


@pytest.mark.parametrize("train", [True, False])
def test_layers_unbatched_and_in_train_and_eval_mode(torch, rng, train):
    for name, inputs, masks in (
        ("TransformerEncoderLayer", (seq(rng, S, False, batched=False),), dict(src_mask=bool_mask(rng, (S, S)))),
        (
            "TransformerDecoderLayer",
            (seq(rng, L, False, batched=False), seq(rng, S, False, batched=False)),
            dict(memory_key_padding_mask=bool_mask(rng, (S,)), tgt_mask=float_mask(rng, (L, L))),
        ),
    ):
        tm, dm = pair(torch, name, D, H, FF, dropout=0.0, batch_first=True)
        tm.train(train), dm.train(train)
        out = compare(torch, tm, dm, inputs, **masks)
        assert out[0].shape == inputs[0].shape


def test_layer_with_a_callable_activation(torch, rng):
    tm, dm = pair(torch, "TransformerEncoderLayer", D, H, FF, dropout=0.0, activation=torch.nn.functional.silu)
    dm.activation = nn.functional.silu
    compare(torch, tm, dm, (seq(rng, S, False),))
    assert nn.TransformerEncoderLayer(D, H, activation=nn.GELU()).activation_relu_or_gelu == 2
    assert nn.TransformerEncoderLayer(D, H, activation="relu").activation_relu_or_gelu == 1
    assert nn.TransformerEncoderLayer(D, H, activation=nn.functional.silu).activation_relu_or_gelu == 0


@pytest.mark.parametrize("norm", [True, False])
def test_encoder_and_decoder_stacks_match_torch(torch, rng, norm):
    for name, layer_name, inputs, masks in (
        (
            "TransformerEncoder",
            "TransformerEncoderLayer",
            (seq(rng, S, True),),
            dict(mask=np.triu(np.full((S, S), -np.inf), 1), src_key_padding_mask=float_mask(rng, (N, S))),
        ),
        (
            "TransformerDecoder",
            "TransformerDecoderLayer",
            (seq(rng, L, True), seq(rng, S, True)),
            dict(tgt_mask=np.triu(np.ones((L, L), bool), 1), memory_key_padding_mask=bool_mask(rng, (N, S))),
        ),
    ):
        t_layer, d_layer = pair(torch, layer_name, D, H, FF, dropout=0.0, batch_first=True, norm_first=True)
        t_norm = torch.nn.LayerNorm(D).double() if norm else None
        d_norm = nn.LayerNorm(D, dtype=F64) if norm else None
        tm = getattr(torch.nn, name)(t_layer, 3, t_norm, **({"enable_nested_tensor": False} if "Enc" in name else {}))
        dm = getattr(nn, name)(d_layer, 3, d_norm)
        with torch.no_grad():
            for p in tm.parameters():  # the copies start equal: make each layer differ
                p.copy_(torch.randn_like(p) * 0.5)
        dm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
        assert len(dm.layers) == 3 and dm.layers[0].linear1.weight is not dm.layers[1].linear1.weight
        compare(torch, tm, dm, inputs, **masks)


def test_clones_are_independent_copies(rng):
    layer = nn.TransformerDecoderLayer(D, H, FF)
    stack = nn.TransformerDecoder(layer, 2)
    own = dict(layer.named_parameters())
    for copy in stack.layers:
        for name, q in copy.named_parameters():
            p = own[name]
            assert q is not p and np.array_equal(q.detach().numpy(), p.detach().numpy()) and q.requires_grad
    stack.layers[0].linear1.weight.data.fill_(1.0)
    assert not np.array_equal(stack.layers[1].linear1.weight.detach().numpy(), 1.0)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("dtype", [F64, F32])
def test_transformer_matches_torch(torch, rng, batch_first, dtype):
    kw = dict(num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=FF, dropout=0.0, batch_first=batch_first)
    tm, dm = pair(torch, "Transformer", D, H, dtype=dtype, **kw)
    src, tgt = seq(rng, S, batch_first, dtype), seq(rng, L, batch_first, dtype)
    compare(
        torch,
        tm,
        dm,
        (src, tgt),
        dtype,
        tgt_mask=dm.generate_square_subsequent_mask(L, dtype=dtype).numpy(),
        src_key_padding_mask=bool_mask(rng, (N, S)),
        memory_key_padding_mask=float_mask(rng, (N, S)).astype(dtype),
        tgt_key_padding_mask=float_mask(rng, (N, L)).astype(dtype),
        memory_mask=float_mask(rng, (L, S)).astype(dtype),
    )


def test_transformer_unbatched_with_causal_detection(torch, rng):
    tm, dm = pair(torch, "Transformer", D, H, 1, 2, FF, dropout=0.0, norm_first=True, activation="gelu")
    src, tgt = seq(rng, S, False, batched=False), seq(rng, L, False, batched=False)
    causal = np.triu(np.ones((L, L), bool), 1)
    compare(torch, tm, dm, (src, tgt), tgt_mask=causal, src_mask=np.triu(np.full((S, S), -np.inf), 1))


def test_generate_square_subsequent_mask(torch):
    for n in (0, 1, 5):
        for ours, theirs in ((None, None), (deepkern.bool, torch.bool), (F64, torch.float64)):
            got = nn.Transformer.generate_square_subsequent_mask(n, dtype=ours).numpy()
            want = torch.nn.Transformer.generate_square_subsequent_mask(n, dtype=theirs).numpy()
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
    assert nn.Transformer.generate_square_subsequent_mask(3, dtype=F64).dtype == F64


def test_causal_mask_detection():
    from deepkern.nn.transformer import _detect_is_causal_mask as detect

    for dtype in (F32, F64, deepkern.bool):
        causal = nn.Transformer.generate_square_subsequent_mask(4, dtype=dtype)
        assert detect(causal) and detect(causal, size=4) and not detect(causal, size=3)
        assert not detect(causal, is_causal=False) and detect(None, is_causal=True) and not detect(None)
    assert not detect(deepkern.zeros(4, 4)) and not detect(deepkern.zeros(4, 5))


# ----------------------------------------------------------------------------------------------
# parameters, initialisation, finite differences


@pytest.mark.parametrize(
    "name,args,kwargs",
    [
        ("MultiheadAttention", (E, H), dict(add_bias_kv=True)),
        ("MultiheadAttention", (E, H), dict(kdim=3, vdim=5, bias=False)),
        ("TransformerEncoderLayer", (D, H, FF), dict(bias=False)),
        ("TransformerDecoderLayer", (D, H, FF), {}),
        ("Transformer", (D, H, 2, 1, FF), {}),
    ],
)
def test_state_dict_names_and_shapes_match_torch(torch, name, args, kwargs):
    theirs = {k: tuple(v.shape) for k, v in getattr(torch.nn, name)(*args, **kwargs).state_dict().items()}
    ours = {k: tuple(v.shape) for k, v in getattr(nn, name)(*args, **kwargs).state_dict().items()}
    assert list(ours) == list(theirs)
    assert ours == theirs


def test_initialisation(rng):
    deepkern.manual_seed(3)
    m = nn.MultiheadAttention(64, 4, add_bias_kv=True, kdim=32)
    for w in (m.q_proj_weight, m.k_proj_weight, m.v_proj_weight):
        bound = math.sqrt(6 / sum(w.shape))
        a = w.detach().numpy()
        assert np.abs(a).max() <= bound and np.abs(a).max() > 0.9 * bound
        assert abs(a.std() - bound / math.sqrt(3)) < 0.1 * bound
    assert not m.in_proj_bias.detach().numpy().any() and not m.out_proj.bias.detach().numpy().any()
    bk = np.concatenate([m.bias_k.detach().numpy(), m.bias_v.detach().numpy()])
    assert bk.std() > 0  # xavier_normal_ with fan_in = 1 * 64, fan_out = 1 * 64: std 0.125
    assert abs(np.concatenate([nn.MultiheadAttention(64, 4, add_bias_kv=True).bias_k.detach().numpy()
                               for _ in range(20)]).std() - math.sqrt(2 / 128)) < 0.02  # fmt: skip
    t = nn.Transformer(16, 2, 1, 1, 24)
    for name, p in t.named_parameters():
        if p.ndim > 1:
            bound = math.sqrt(6 / sum(p.shape))
            assert np.abs(p.detach().numpy()).max() <= bound, name


def test_gradcheck_encoder_layer(rng):
    m = nn.TransformerEncoderLayer(4, 2, 6, dropout=0.0, norm_first=True, activation="gelu", dtype=F64)
    params = {name: rng.standard_normal(p.shape) * 0.5 for name, p in m.state_dict().items()}
    m.load_state_dict(params)
    src = deepkern.tensor(rng.standard_normal((3, 2, 4)), requires_grad=True)
    mask = deepkern.tensor(bool_mask(rng, (2, 3)))

    def fn(x, *ps):
        return m(x, src_key_padding_mask=mask)

    gradcheck(fn, src, *m.parameters())


def test_gradcheck_mha_with_weights(rng):
    m = nn.MultiheadAttention(4, 2, add_bias_kv=True, add_zero_attn=True, kdim=3, dtype=F64)
    q, k = (deepkern.tensor(rng.standard_normal(s), requires_grad=True) for s in ((3, 4), (2, 3)))
    v = deepkern.tensor(rng.standard_normal((2, 4)), requires_grad=True)
    gradcheck(lambda *a: m(*a[:3], average_attn_weights=False), q, k, v, *m.parameters())


# ----------------------------------------------------------------------------------------------
# dropout


def test_attention_dropout_statistics_and_reproducibility(rng):
    m = nn.MultiheadAttention(16, 2, dropout=0.5, dtype=F64)
    x = deepkern.tensor(rng.standard_normal((40, 8, 16)))
    m.eval()
    _, w_eval = m(x, x, x, average_attn_weights=False)
    m.train()
    deepkern.manual_seed(7)
    out1, w1 = m(x, x, x, average_attn_weights=False)
    deepkern.manual_seed(7)
    out2, w2 = m(x, x, x, average_attn_weights=False)
    np.testing.assert_array_equal(out1.detach().numpy(), out2.detach().numpy())
    np.testing.assert_array_equal(w1.detach().numpy(), w2.detach().numpy())
    w1, w_eval = w1.detach().numpy(), w_eval.detach().numpy()
    kept = w1 != 0
    assert abs(kept.mean() - 0.5) < 0.02  # 51200 draws: 4.5 standard deviations
    np.testing.assert_allclose(w1[kept], 2 * w_eval[kept], rtol=1e-12)
    _, w3 = m(x, x, x, average_attn_weights=False)  # the generator moved on: another mask
    assert not np.array_equal(w3.detach().numpy() != 0, kept)


def test_layer_dropout_reproducible_and_off_in_eval(rng):
    m = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.3, dtype=F64)
    x = deepkern.tensor(rng.standard_normal((5, 3, 8)))
    deepkern.manual_seed(11)
    a = m(x).detach().numpy()
    deepkern.manual_seed(11)
    b = m(x).detach().numpy()
    c = m(x).detach().numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    m.eval()
    e = m(x).detach().numpy()
    m.dropout.p = m.dropout1.p = m.dropout2.p = m.self_attn.dropout = 0.0
    m.train()
    np.testing.assert_array_equal(e, m(x).detach().numpy())


# ----------------------------------------------------------------------------------------------
# bad arguments


def test_bad_constructor_arguments():
    with raises_naming(ValueError, "embed_dim", "divisible", "num_heads", "10", "3"):
        nn.MultiheadAttention(10, 3)
    with raises_naming(ValueError, "embed_dim", "num_heads", "greater than 0"):
        nn.MultiheadAttention(0, 2)
    with raises_naming(RuntimeError, "activation", "swish"):
        nn.TransformerEncoderLayer(8, 2, activation="swish")
    with raises_naming(TypeError, "activation"):
        nn.TransformerDecoderLayer(8, 2, activation=3)
    with raises_naming(TypeError, "dtype", "float32 or float64"):
        nn.MultiheadAttention(8, 2, dtype=np.int32)


def test_bad_forward_arguments(rng):
    m = nn.MultiheadAttention(E, H)
    q, k = deepkern.randn(L, N, E), deepkern.randn(S, N, E)
    bool_zeros = {"dtype": deepkern.bool}
    cases = [
        (dict(key_padding_mask=deepkern.zeros(N, S + 1, **bool_zeros)), ValueError, [(N, S + 1), (N, S)]),
        (dict(key_padding_mask=deepkern.zeros(S, N, **bool_zeros)), ValueError, [(S, N), (N, S)]),
        (dict(attn_mask=deepkern.zeros(L, L, **bool_zeros)), RuntimeError, [(L, L), (L, S)]),
        (dict(attn_mask=deepkern.zeros(N, L, S)), RuntimeError, [(N, L, S), (N * H, L, S)]),
        (dict(attn_mask=deepkern.zeros(1, 1, L, S)), RuntimeError, [(1, 1, L, S)]),
    ]
    for kwargs, exc, shapes in cases:
        with raises_naming(exc, next(iter(kwargs)), *map(shape_pattern, shapes)):
            m(q, k, k, **kwargs)
    with raises_naming(TypeError, "attn_mask", "int64"):
        m(q, k, k, attn_mask=deepkern.zeros(L, S, dtype=deepkern.int64))
    with raises_naming(RuntimeError, "attn_mask", "is_causal"):
        m(q, k, k, is_causal=True)
    for kwargs, exc, needles in cases:
        with raises_naming(exc, *needles):
            m(q, k, k, **kwargs)
    with raises_naming(ValueError, "query", shape_pattern((L, N, E + 1)), str(E)):
        m(deepkern.randn(L, N, E + 1), k, k)
    with raises_naming(ValueError, "key", "value", shape_pattern((S, N)), shape_pattern((S + 1, N))):
        m(q, k, deepkern.randn(S + 1, N, E))
    with raises_naming(ValueError, "key", "value", "3-D", "2-D"):
        m(q, k, deepkern.randn(S, E))
    with raises_naming(ValueError, "query", "4-D"):
        m(deepkern.randn(1, L, N, E), k, k)
    with raises_naming(ValueError, "batch", shape_pattern((L, N, E)), shape_pattern((S, N + 1, E))):
        m(q, deepkern.randn(S, N + 1, E), deepkern.randn(S, N + 1, E))
    with raises_naming(TypeError, "dtype", "float64", "float32"):
        m(q.double(), k, k)
    t = nn.Transformer(E, H, 1, 1, FF)
    with raises_naming(RuntimeError, "batch number", shape_pattern((S, N, E)), shape_pattern((L, N + 1, E))):
        t(deepkern.randn(S, N, E), deepkern.randn(L, N + 1, E))
    with raises_naming(RuntimeError, "d_model", shape_pattern((L, N, E + 2))):
        t(deepkern.randn(S, N, E), deepkern.randn(L, N, E + 2))
    with raises_naming(RuntimeError, "attn_mask", shape_pattern((S, S))):
        t.encoder(deepkern.randn(S, N, E), mask=deepkern.zeros(S, S + 1))
