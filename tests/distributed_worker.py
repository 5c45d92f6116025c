"""One rank of the MPI jobs that tests/test_distributed.py launches (``mpiexec -n N python -m mpi4py
distributed_worker.py MODE OUT``). MODE ``checks`` runs every check of CHECKS on every rank, each
comparing deepkern's collectives and DistributedDataParallel with NumPy references that every rank
computes itself (it can make every rank's inputs from their seeds); rank 0 writes {check name:
"ok" or the failure} as JSON to OUT. A check does all its collectives before asserting, so a
failing rank does not leave the others waiting. MODE ``raise``: rank 1 raises while the others
wait in a barrier (the job must end, not hang)."""

from __future__ import annotations

import json
import sys
import traceback

import deepkern as dk
import deepkern.distributed as dist
import numpy as np
from deepkern import data, federated, nn, optim
from deepkern.nn.parallel import DistributedDataParallel as DDP

OPS = {
    dist.ReduceOp.SUM: lambda xs: np.sum(xs, axis=0, dtype=xs.dtype),
    dist.ReduceOp.PRODUCT: lambda xs: np.prod(xs, axis=0, dtype=xs.dtype),
    dist.ReduceOp.MIN: lambda xs: np.min(xs, axis=0),
    dist.ReduceOp.MAX: lambda xs: np.max(xs, axis=0),
    dist.ReduceOp.AVG: lambda xs: np.mean(xs, axis=0, dtype=np.result_type(xs.dtype, np.float64)).astype(xs.dtype),
}
DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64"]
DTYPES += ["complex64", "complex128"]


def rank_input(rank: int, shape, dtype, seed: int) -> np.ndarray:
    """Rank ``rank``'s input: small values (products of a few ranks fit every integer dtype)."""
    rng = np.random.default_rng([seed, rank])
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        return rng.integers(1, 4, shape).astype(dtype)
    x = rng.uniform(0.5, 1.5, shape)
    if dtype.kind == "c":
        x = x + 1j * rng.uniform(-0.5, 0.5, shape)
    return x.astype(dtype)


def all_inputs(shape, dtype, seed: int) -> np.ndarray:
    return np.stack([rank_input(r, shape, dtype, seed) for r in range(WORLD)])


def assert_close(got, want, what: str) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, (
        f"{what}: {got.shape} {got.dtype} vs {want.shape} {want.dtype}"
    )
    if want.dtype.kind in "iub":
        assert np.array_equal(got, want), f"{what}: {got} != {want}"
    else:
        tol = 1e-5 if want.dtype in (np.float32, np.complex64) else 1e-13
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=what)


# -- collectives ---------------------------------------------------------------------------------


def check_all_reduce_every_op_and_dtype():
    results, skipped = [], []
    for i, dtype in enumerate(DTYPES):
        for j, op in enumerate(OPS):
            seed = 100 * i + j
            shape = (3, 5) if (i + j) % 2 else (7,)
            x = rank_input(RANK, shape, dtype, seed)
            if (op == dist.ReduceOp.AVG and x.dtype.kind in "iu") or (op in ("min", "max") and x.dtype.kind == "c"):
                try:
                    dist.all_reduce(x, op=op)
                except TypeError as exc:
                    skipped.append(str(exc))
                    continue
                raise AssertionError(f"all_reduce accepted op {op} for dtype {dtype}")
            dist.all_reduce(x, op=op)
            results.append((x, OPS[op](all_inputs(shape, dtype, seed)), f"all_reduce {op} {dtype}"))
    for got, want, what in results:
        assert_close(got, want, what)
    assert all("AVG" in s or "complex" in s for s in skipped), skipped


def check_all_reduce_tensor_strided_async_empty():
    t = dk.from_numpy(rank_input(RANK, (4, 3), "float64", 7))
    dist.all_reduce(t)
    strided = rank_input(RANK, (5, 6), "float32", 8)
    view = strided[::2, 1::2]  # non-contiguous: staged and written back
    dist.all_reduce(view, op=dist.ReduceOp.MAX)
    a = rank_input(RANK, (1001,), "float64", 9)
    work = dist.all_reduce(a, op=dist.ReduceOp.AVG, async_op=True)
    work.wait()
    done = work.is_completed()
    b = rank_input(RANK, (3, 4), "float32", 10)[:, ::2]
    work_b = dist.all_reduce(b, async_op=True)
    while not work_b.is_completed():
        pass
    empty = np.zeros((0, 3), np.float32)
    dist.all_reduce(empty)
    assert_close(t.numpy(), all_inputs((4, 3), "float64", 7).sum(0), "Tensor all_reduce")
    want = all_inputs((5, 6), "float32", 8)
    assert_close(view, want[:, ::2, 1::2].max(0), "strided all_reduce")
    assert_close(strided[1::2], rank_input(RANK, (5, 6), "float32", 8)[1::2], "rows outside the view")
    assert_close(a, all_inputs((1001,), "float64", 9).mean(0), "async AVG")
    assert done
    assert_close(b, all_inputs((3, 4), "float32", 10)[:, :, ::2].sum(0), "async strided SUM")
    assert empty.shape == (0, 3)


def check_broadcast():
    results = []
    for src in range(WORLD):
        x = rank_input(RANK, (2, 3), "float64", 20 + src)
        dist.broadcast(x, src=src)
        results.append((x, rank_input(src, (2, 3), "float64", 20 + src), f"broadcast src {src}"))
    y = rank_input(RANK, (4, 4), "int32", 30)[:, ::3]
    dist.broadcast(y, src=WORLD - 1, async_op=True).wait()
    results.append((y, rank_input(WORLD - 1, (4, 4), "int32", 30)[:, ::3], "async strided broadcast"))
    for got, want, what in results:
        assert_close(got, want, what)


def check_all_gather():
    x = rank_input(RANK, (3, 2), "float32", 40)
    out = [np.full((3, 2), np.nan, np.float32) for _ in range(WORLD)]
    dist.all_gather(out, x)
    tensors = [dk.zeros(5, dtype=dk.int64) for _ in range(WORLD)]
    dist.all_gather(tensors, dk.from_numpy(rank_input(RANK, (5,), "int64", 41)), async_op=True).wait()
    want = all_inputs((3, 2), "float32", 40)
    for r in range(WORLD):
        assert_close(out[r], want[r], f"all_gather from rank {r}")
        assert_close(tensors[r].numpy(), rank_input(r, (5,), "int64", 41), f"all_gather Tensor from rank {r}")


def check_reduce_scatter():
    parts = [rank_input(RANK, (2, 3), "float64", 50 + i) for i in range(WORLD)]
    out = np.full((2, 3), np.nan)
    dist.reduce_scatter(out, parts)
    flat = rank_input(RANK, (WORLD * 4,), "int64", 60)
    out_t = np.zeros(4, np.int64)
    dist.reduce_scatter_tensor(out_t, flat, op=dist.ReduceOp.MAX)
    out_a = np.zeros((2,), np.float32)
    dist.reduce_scatter_tensor(
        out_a, rank_input(RANK, (WORLD, 2), "float32", 70), op=dist.ReduceOp.AVG, async_op=True
    ).wait()
    assert_close(out, all_inputs((2, 3), "float64", 50 + RANK).sum(0), "reduce_scatter")
    assert_close(out_t, all_inputs((WORLD * 4,), "int64", 60).max(0)[RANK * 4 : RANK * 4 + 4], "reduce_scatter_tensor")
    assert_close(
        out_a, all_inputs((WORLD, 2), "float32", 70).mean(0)[RANK].astype(np.float32), "reduce_scatter_tensor AVG"
    )


def expect(error, words, call) -> None:
    try:
        call()
    except error as exc:
        for w in words:
            assert w in str(exc), f"{error.__name__} without {w!r}: {exc}"
        return
    raise AssertionError(f"expected {error.__name__} mentioning {words}")


def check_errors():
    x = np.ones(3)
    expect(ValueError, ["src", str(WORLD)], lambda: dist.broadcast(x, src=WORLD))
    expect(ValueError, ["src", "-1"], lambda: dist.broadcast(x, src=-1))
    expect(ValueError, ["op", "bogus"], lambda: dist.all_reduce(x, op="bogus"))
    expect(TypeError, ["tensor", "list"], lambda: dist.all_reduce([1.0, 2.0]))
    expect(TypeError, ["dtype", "float16"], lambda: dist.all_reduce(np.ones(3, np.float16)))
    expect(ValueError, ["read-only"], lambda: dist.all_reduce(np.broadcast_to(np.ones(1), (3,))))
    expect(ValueError, ["tensor_list", str(WORLD)], lambda: dist.all_gather([x], x))
    expect(ValueError, ["input_list[0]", "(2,)"], lambda: dist.reduce_scatter(x, [np.ones(2)] * WORLD))
    expect(ValueError, ["input", "world size"], lambda: dist.reduce_scatter_tensor(x, np.ones(3 * WORLD + 1)))
    # Shapes that differ across ranks: every rank gets the error (nothing hangs, nothing is written).
    mine = np.full(2 + RANK, 5.0)
    expect(ValueError, ["differ", "rank 1"], lambda: dist.all_reduce(mine))
    assert np.all(mine == 5.0)
    expect(ValueError, ["differ"], lambda: dist.broadcast(np.ones(3), src=RANK % 2))
    expect(RuntimeError, ["twice"], lambda: dist.init_process_group("mpi"))
    expect(ValueError, ["backend", "nccl"], lambda: dist.init_process_group("nccl"))


# -- DistributedDataParallel ---------------------------------------------------------------------


class Net(nn.Module):
    """A convolution over (B, 1, 4, 6) images, its rows read as a sequence by an LSTM, a linear head."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.lstm = nn.LSTM(12, 5, batch_first=True)
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        h = self.conv(x).relu()  # (B, 2, 4, 6)
        seq = h.permute(0, 2, 1, 3).reshape(h.shape[0], 4, 12)
        out, _ = self.lstm(seq)
        return self.head(out[:, -1])


def make_net(seed: int, dtype):
    dk.manual_seed(seed)
    return Net().to(dtype)


def batch(step: int, size: int, dtype):
    rng = np.random.default_rng([1000, step])
    return rng.standard_normal((size, 1, 4, 6)).astype(dtype), rng.standard_normal((size, 3)).astype(dtype)


def loss_of(model, x, y):
    return ((model(dk.from_numpy(x)) - dk.from_numpy(y)) ** 2).mean()


def train_ddp(dtype, opt_cls, steps: int = 3, global_batch: int = 12, **ddp_args):
    """DDP over the ranks (each starting from its own weights) with batch global_batch / WORLD, and
    one process with the whole batch from rank 0's weights; returns both models."""
    ddp = DDP(make_net(RANK, dtype), bucket_cap_mb=0.001, **ddp_args)  # small buckets: several all-reduces
    single = make_net(0, dtype)
    opts = opt_cls(ddp.parameters()), opt_cls(single.parameters())
    share = global_batch // WORLD
    for step in range(steps):
        x, y = batch(step, global_batch, dtype)
        mine = slice(RANK * share, (RANK + 1) * share)
        for model, opt, (xs, ys) in ((ddp, opts[0], (x[mine], y[mine])), (single, opts[1], (x, y))):
            opt.zero_grad()
            loss_of(model, xs, ys).backward()
            opt.step()
    return ddp, single


def compare_models(ddp, single, dtype, what: str):
    tol = 2e-5 if dtype == np.float32 else 1e-12
    for (name, p), q in zip(ddp.module.named_parameters(), single.parameters()):
        np.testing.assert_allclose(
            p.detach().numpy(), q.detach().numpy(), rtol=tol, atol=tol, err_msg=f"{what}: {name}"
        )


def check_ddp_matches_one_process():
    cases = [
        (np.float64, lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9)),
        (np.float64, lambda ps: optim.Adam(ps, lr=0.01)),
        (np.float32, lambda ps: optim.SGD(ps, lr=0.1)),
        (np.float32, lambda ps: optim.Adam(ps, lr=0.01)),
    ]
    runs = [
        (train_ddp(dtype, opt, gradient_as_bucket_view=view), dtype, view)
        for dtype, opt in cases
        for view in (False, True)
    ]
    for (ddp, single), dtype, view in runs:
        compare_models(ddp, single, dtype, f"DDP {dtype.__name__} gradient_as_bucket_view={view}")


def check_ddp_ranks_end_equal():
    ddp, _ = train_ddp(np.float32, lambda ps: optim.Adam(ps, lr=0.01), steps=2)
    flat = np.concatenate([p.detach().numpy().ravel() for p in ddp.parameters()])
    gathered = [np.zeros_like(flat) for _ in range(WORLD)]
    dist.all_gather(gathered, flat)
    for r in range(WORLD):
        assert np.array_equal(gathered[r], gathered[0]), f"rank {r}'s parameters differ from rank 0's"


def check_no_sync_accumulation():
    for view in (False, True):
        no_sync_accumulation(view)


def no_sync_accumulation(view: bool):
    """Two micro-batches (the first inside no_sync) give the step of one batch twice their size."""
    dtype = np.float64
    ddp, single = DDP(make_net(RANK, dtype), gradient_as_bucket_view=view), make_net(0, dtype)
    share, micro = 4, 2
    x, y = batch(0, share * WORLD * micro, dtype)
    for k in range(micro):
        xs, ys = (
            x[k * share * WORLD :][RANK * share : (RANK + 1) * share],
            y[k * share * WORLD :][RANK * share : (RANK + 1) * share],
        )
        if k < micro - 1:
            with ddp.no_sync():
                (loss_of(ddp, xs, ys) / micro).backward()
            local = [p.grad.numpy().copy() for p in ddp.parameters()]
        else:
            (loss_of(ddp, xs, ys) / micro).backward()
    order = np.concatenate([np.arange(k * share * WORLD, (k + 1) * share * WORLD) for k in range(micro)])
    loss_of(single, x[order], y[order]).backward()
    # Inside no_sync the gradients stayed local: they differ across ranks.
    gathered = [np.zeros_like(local[0]) for _ in range(WORLD)]
    dist.all_gather(gathered, local[0])
    for p, q in zip(ddp.parameters(), single.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-12, atol=1e-12)
    assert any(not np.array_equal(g, gathered[0]) for g in gathered[1:])


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 2)
        self.b = nn.Linear(3, 2)

    def forward(self, x, use_b: bool):
        return self.a(x) + self.b(x) if use_b else self.a(x)


def check_find_unused_parameters():
    for view in (False, True):
        find_unused_parameters(view)


def find_unused_parameters(view: bool):
    dk.manual_seed(0)
    model = Branchy().double()
    ref = Branchy().double()
    ref.load_state_dict(model.state_dict())
    ddp = DDP(model, find_unused_parameters=True, gradient_as_bucket_view=view)
    x = np.random.default_rng([5, RANK]).standard_normal((4, 3))
    ddp(dk.from_numpy(x), RANK == 0).sum().backward()  # only rank 0 uses b
    for r in range(WORLD):  # the reference: the mean over the ranks of their losses
        xr = np.random.default_rng([5, r]).standard_normal((4, 3))
        (ref(dk.from_numpy(xr), r == 0).sum() / WORLD).backward()
    plain = DDP(Branchy().double())
    err = None
    try:
        plain(dk.from_numpy(x), False).sum().backward()
    except RuntimeError as exc:
        err = str(exc)
    first = [p.grad.numpy().copy() for p in model.parameters()]
    ddp(dk.from_numpy(x), False).sum().backward()  # no rank uses b: its gradients stay as they were
    for r in range(WORLD):
        xr = np.random.default_rng([5, r]).standard_normal((4, 3))
        (ref(dk.from_numpy(xr), False).sum() / WORLD).backward()
    for p, q in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-12, atol=1e-12)
    for (name, p), before in zip(model.named_parameters(), first):
        if name.startswith("b."):
            assert np.array_equal(p.grad.numpy(), before), name
    assert err is not None and "b.weight" in err and "find_unused_parameters" in err, err


def check_unused_parameters_with_no_sync():
    for view in (False, True):
        unused_parameters_with_no_sync(view)


def unused_parameters_with_no_sync(view: bool):
    """A parameter that got gradients only inside no_sync is used: the syncing backward averages
    its accumulated gradient (it had been left local, a different value on every rank)."""
    dk.manual_seed(0)
    model = Branchy().double()
    ddp = DDP(model, find_unused_parameters=True, gradient_as_bucket_view=view)
    x = np.full((2, 3), RANK + 1.0)
    with ddp.no_sync():
        ddp(dk.from_numpy(x), True).sum().backward()  # b only here
    ddp(dk.from_numpy(x), False).sum().backward()
    mean = sum(2 * (r + 1.0) for r in range(WORLD)) / WORLD  # b.weight's gradient rows: sum over the batch of x
    np.testing.assert_array_equal(model.b.weight.grad.numpy(), np.full((2, 3), mean))
    np.testing.assert_array_equal(model.a.weight.grad.numpy(), np.full((2, 3), 2 * mean))


class Hooked(nn.Module):
    """Two linear layers; ``fail``: a hook on the hidden activation's gradient raises."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.fail = nn.Linear(3, 4), nn.Linear(4, 1), False

    def forward(self, x):
        h = self.l1(x)
        if self.fail:
            h.register_hook(lambda g: (_ for _ in ()).throw(FloatingPointError("a check on h's gradient")))
        return self.l2(h.tanh())


def check_backward_that_raised_stops_the_wrapper():
    """A backward that raises midway (after l2's buckets started) leaves the all-reduces unfinished:
    the next forward is a RuntimeError (PyTorch's), where the gradients had silently stopped being
    averaged; a new wrapper around the module averages again."""
    dk.manual_seed(0)
    model, ref = Hooked().double(), Hooked().double()
    ref.load_state_dict(model.state_dict())
    ddp = DDP(model, bucket_cap_mb=1e-5)  # a bucket per parameter
    xs = [np.random.default_rng([3, r]).standard_normal((4, 3)) for r in range(WORLD)]
    model.fail = True
    try:
        ddp(dk.from_numpy(xs[RANK])).sum().backward()
    except FloatingPointError:
        pass
    model.fail = False
    expect(RuntimeError, ["previous backward", "wrap the module again"], lambda: ddp(dk.from_numpy(xs[RANK])))
    again = DDP(model)
    for p in model.parameters():
        p.grad = None
    again(dk.from_numpy(xs[RANK])).sum().backward()
    for r in range(WORLD):
        (ref(dk.from_numpy(xs[r])).sum() / WORLD).backward()
    for p, q in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-12, atol=1e-12)


def check_buffers_broadcast_before_evaluation():
    """As PyTorch's: a forward after a training forward copies rank 0's buffers first, also under
    no_grad, so evaluation sees rank 0's running statistics on every rank."""
    dk.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)).double()
    ddp = DDP(model)
    ddp(dk.from_numpy(np.random.default_rng([7, RANK]).standard_normal((5, 3)))).sum().backward()
    ddp.eval()
    with dk.no_grad():
        out = ddp(dk.from_numpy(np.ones((1, 3)))).numpy()
    gathered = [np.zeros_like(out) for _ in range(WORLD)]
    dist.all_gather(gathered, out)
    for r in range(WORLD):
        np.testing.assert_array_equal(gathered[r], gathered[0])


def check_bfloat16_model_trains():
    """bfloat16 parameters and buffers (which MPI cannot name): broadcast from rank 0 at construction,
    gradients averaged (summed in float32)."""
    dk.manual_seed(RANK)  # different weights per rank: the wrapper makes them rank 0's
    model = nn.Sequential(nn.Linear(4, 2), nn.BatchNorm1d(2)).to(dk.bfloat16)
    model[1].running_mean._array[...] = RANK
    ddp = DDP(model, find_unused_parameters=True)  # kept alive: its hooks hold it weakly
    weights = ddp.module[0].weight.detach().numpy().astype(np.float32)
    gathered = [np.zeros_like(weights) for _ in range(WORLD)]
    dist.all_gather(gathered, weights)
    assert all(np.array_equal(g, gathered[0]) for g in gathered)
    assert np.all(model[1].running_mean.numpy().astype(np.float32) == 0)
    x = np.full((2, 4), RANK + 1.0, np.float32)
    model[0](dk.from_numpy(x).to(dk.bfloat16)).sum().backward()  # the batch norm unused
    grad = model[0].weight.grad
    assert grad.dtype == dk.bfloat16
    mean = sum(2 * (r + 1.0) for r in range(WORLD)) / WORLD  # each row: the sum over the batch of x
    np.testing.assert_array_equal(grad.numpy().astype(np.float32), np.full((2, 4), mean, np.float32))


def check_gradient_as_bucket_view():
    """The gradients live in the buckets across zero_grad (both kinds), optimizer steps and a
    replaced .grad, and every step's averages match one process's gradients of the whole batch."""
    dtype = np.float64
    model = make_net(RANK, dtype)
    views, written = {}, []  # the engine writes each gradient straight into its bucket's view
    for p in model.parameters():  # registered first: runs before DDP's hook can copy anything in
        p.register_post_accumulate_grad_hook(lambda p: written.append(p.grad._array is views[id(p)]))
    ddp = DDP(model, bucket_cap_mb=0.001, gradient_as_bucket_view=True)
    views.update({id(p): v for b in ddp._buckets for p, v in zip(b.params, b.views)})
    single = make_net(0, dtype)
    opt = optim.SGD(ddp.parameters(), lr=0.1)
    ref_opt = optim.SGD(single.parameters(), lr=0.1)
    share = 4
    failures = []
    for step, how in enumerate(["none", "zeros", "module", "replaced", "none"]):
        if how == "none":
            opt.zero_grad()
        elif how == "zeros":
            opt.zero_grad(set_to_none=False)
        elif how == "module":
            ddp.zero_grad(set_to_none=False)
        else:  # a gradient the user set: backward accumulates into it, the bucket takes it over
            for p in ddp.parameters():
                p.grad = dk.from_numpy(np.zeros(p.shape, dtype))
        ref_opt.zero_grad()
        x, y = batch(step, share * WORLD, dtype)
        loss_of(ddp, x[RANK * share : (RANK + 1) * share], y[RANK * share : (RANK + 1) * share]).backward()
        loss_of(single, x, y).backward()
        for b in ddp._buckets:
            for p, view in zip(b.params, b.views):
                if p.grad is None or p.grad._array is not view:
                    failures.append(f"step {step} ({how}): a .grad is not its bucket's view")
        for p, q in zip(ddp.parameters(), single.parameters()):
            if not np.allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-12, atol=1e-12):
                failures.append(f"step {step} ({how}): averaged gradient differs")
        opt.step()
        ref_opt.step()
    assert not failures, failures
    n = len(views)
    assert written == [True] * (3 * n) + [False] * n + [True] * n, written  # step 3: the user's .grad
    compare_models(ddp, single, dtype, "after the steps")


def check_ddp_state_dict_and_buffers():
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    model[1].running_mean._array[...] = RANK  # rank 0's buffers win
    ddp = DDP(model)
    keys = list(ddp.state_dict())
    assert keys[0] == "module.0.weight" and list(ddp.module.state_dict())[0] == "0.weight", keys
    assert np.all(model[1].running_mean.numpy() == 0)
    expect(ValueError, ["differ", "0.weight", "rank 1"], lambda: DDP(nn.Sequential(nn.Linear(3, 2 + min(RANK, 1)))))
    expect(ValueError, ["bucket_cap_mb"], lambda: DDP(nn.Linear(2, 2), bucket_cap_mb=0))
    expect(TypeError, ["module", "int"], lambda: DDP(3))


def check_buckets_start_during_backward():
    """Buckets hold the parameters in reverse registration order, and each all-reduce starts while
    backward still has parameters to reach; with the benchmark's overlap off every one starts
    after backward reached them all, and the gradients are the same."""
    from deepkern.bench.allreduce import _defer_allreduces

    (ddp, params, at_launch, grads), (_, _, deferred, deferred_grads) = (
        launches_in_backward(defer) for defer in (None, _defer_allreduces)
    )
    order = [p for b in ddp._buckets for p in b.params]
    assert [id(p) for p in order] == [id(p) for p in reversed(params)]
    assert len(ddp._buckets) > 2 and len(at_launch) == len(deferred) == len(ddp._buckets)
    assert all(n < len(params) for n in at_launch) and at_launch == sorted(at_launch), at_launch
    assert deferred == [len(params)] * len(ddp._buckets), deferred
    for g, h in zip(grads, deferred_grads):
        assert np.array_equal(g, h)


def launches_in_backward(defer):
    """A backward of a DDP of small buckets (``defer(ddp)`` first, if given): the DDP, its
    parameters, how many parameters' gradients were complete (their hooks done) at each bucket's
    launch, the gradients."""
    ddp = DDP(make_net(0, np.float64), bucket_cap_mb=0.0005)
    if defer is not None:
        defer(ddp)
    params = list(ddp.parameters())
    complete = []
    for p in params:  # registered after DDP's hook: counts a parameter once DDP has handled it
        p.register_post_accumulate_grad_hook(lambda p: complete.append(1))
    reached_at_launch = []
    launch = type(ddp._buckets[0]).launch

    def recording_launch(bucket, last=False):
        reached_at_launch.append(len(complete))
        launch(bucket, last)

    type(ddp._buckets[0]).launch = recording_launch
    try:
        x, y = batch(0, 4, np.float64)
        loss_of(ddp, x, y).backward()
    finally:
        type(ddp._buckets[0]).launch = launch
    return ddp, params, reached_at_launch, [p.grad.numpy().copy() for p in params]


def local_gradients(model, step: int):
    """``model``'s gradients (from None) on this rank's rows of step ``step``'s batch, computed alone."""
    model.zero_grad()
    x, y = batch(step, 4 * WORLD, np.float64)
    loss_of(model, x[RANK * 4 : (RANK + 1) * 4], y[RANK * 4 : (RANK + 1) * 4]).backward()
    return [p.grad.numpy().copy() for p in model.parameters()]


def check_deleted_wrapper_leaves_the_module_alone():
    """After the wrapper is deleted, its module trains as a bare single-process module: exactly the
    gradients of a copy never wrapped, in memory of their own (not the old buckets)."""
    import weakref

    for view in (False, True):
        model = make_net(RANK, np.float64)
        ddp = DDP(model, bucket_cap_mb=0.001, gradient_as_bucket_view=view)
        local_gradients(ddp, 0)  # one all-reducing backward
        buffers = [b.buffer for b in ddp._buckets]
        gone = weakref.ref(ddp)
        del ddp
        assert gone() is None, "the deleted wrapper is still alive (its hooks hold it)"
        bare = make_net(0, np.float64)
        bare.load_state_dict(model.state_dict())
        got, want = local_gradients(model, 1), local_gradients(bare, 1)
        for (name, p), g, w in zip(model.named_parameters(), got, want):
            assert np.array_equal(g, w), f"view={view}: {name}'s gradient is not the single-process one"
            assert not any(np.shares_memory(p.grad.numpy(), b) for b in buffers), f"{name} writes into a bucket"


def check_wrapping_twice_all_reduces_once():
    """A second wrapper around the same module takes its parameters over: one all-reduce per bucket
    per backward, the averaged gradients of one process, and the first wrapper refuses to run."""
    wrapping_twice(view=False)
    wrapping_twice(view=True)


def wrapping_twice(view: bool):
    model = make_net(RANK, np.float64)
    first = DDP(model, bucket_cap_mb=0.001, gradient_as_bucket_view=view)
    second = DDP(model, bucket_cap_mb=0.001, gradient_as_bucket_view=view)
    calls = []
    iallreduce = dist.iallreduce
    dist.iallreduce = lambda *args, **kw: calls.append(1) or iallreduce(*args, **kw)
    try:
        averaged = local_gradients(second, 0)
    finally:
        dist.iallreduce = iallreduce
    assert len(calls) == len(second._buckets) > 1, (len(calls), len(second._buckets))
    single = make_net(0, np.float64)
    x, y = batch(0, 4 * WORLD, np.float64)
    loss_of(single, x, y).backward()
    for (name, _), g, q in zip(model.named_parameters(), averaged, single.parameters()):
        np.testing.assert_allclose(g, q.grad.numpy(), rtol=1e-12, atol=1e-12, err_msg=f"view={view}: {name}")
    expect(RuntimeError, ["newer DistributedDataParallel"], lambda: first(dk.from_numpy(x)))


# -- federated clients on the ranks ---------------------------------------------------------------


def federated_setup():
    """A model with dropout and BatchNorm, 7 clients' data sets and a FedProx trainer (the same on every rank)."""
    dk.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 3))
    rng = np.random.default_rng(0)
    ds = data.TensorDataset(rng.standard_normal((70, 5)).astype(np.float32), rng.integers(0, 3, 70))
    sets = [data.Subset(ds, p) for p in federated.iid_split(70, 7, seed=1)]
    adam = lambda ps: optim.Adam(ps, lr=0.01)  # noqa: E731
    trainer = federated.LocalTrainer(nn.CrossEntropyLoss(), adam, local_epochs=2, batch_size=4, mu=0.01)
    return model, sets, trainer


def check_federated_mpi_runner_matches_simulation():
    """FedAvg with the clients on the ranks gives bit for bit the global model (and the round
    summaries) of the one-process simulation with the same seeds."""
    model, sets, trainer = federated_setup()
    expect(
        ValueError,
        ["client sample counts", "differ"],
        lambda: federated.MPIRunner(model, sets[: 7 - min(RANK, 1)], trainer),
    )
    runner = federated.MPIRunner(model, sets, trainer, seed=5)
    rounds = 3
    if RANK != 0:
        expect(RuntimeError, ["only rank 0", f"rank {RANK}"], lambda: runner.fit([0], {}, 1))
        runner.serve()
        return
    expect(RuntimeError, ["every rank but 0"], runner.serve)
    server = federated.FedAvg(runner, model, client_fraction=0.6, seed=2)
    try:
        infos = [server.run_round() for _ in range(rounds)]
    finally:
        runner.close()
    model, sets, trainer = federated_setup()
    simulation = federated.FedAvg(
        federated.SimulationRunner(model, sets, trainer, seed=5), model, client_fraction=0.6, seed=2
    )
    assert infos == [simulation.run_round() for _ in range(rounds)]
    assert sorted({k % WORLD for info in infos for k in info["clients"]}) == list(range(WORLD))  # every rank trained
    assert list(server.state) == list(simulation.state)
    for name in server.state:
        assert np.array_equal(server.state[name], simulation.state[name]), name
    assert not np.array_equal(server.state["0.weight"], federated.host_state(federated_setup()[0])["0.weight"])


CHECKS = {name: fn for name, fn in globals().items() if name.startswith("check_")}


def main() -> None:
    global RANK, WORLD
    mode, out = sys.argv[1], sys.argv[2]
    dist.init_process_group("mpi")
    RANK, WORLD = dist.get_rank(), dist.get_world_size()
    if mode == "raise":
        if RANK == 1:
            raise RuntimeError("rank 1 fails on purpose")
        dist.barrier()
        return
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception:
            results[name] = f"rank {RANK}: {traceback.format_exc()}"
    everyone = dist._comm().gather(results, root=0)
    if RANK == 0:
        merged = {name: next((r[name] for r in everyone if r[name] != "ok"), "ok") for name in CHECKS}
        with open(out, "w", encoding="utf-8") as f:
            json.dump(merged, f)
    dist.destroy_process_group()


RANK = WORLD = 0
if __name__ == "__main__":
    main()
