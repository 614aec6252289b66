"""The CPU fast paths of the frames Q-network and of Adam compute what the plain layers compute.

Small frames (MinAtar's 10x10) run the first conv layer as one gather and one matmul, the frames
Q-network keeps its fully connected weights transposed in memory (``input_major``), and Adam
takes parameters of any layout and flushes denormals. None of it may change the state dict, what
a network computes beyond float rounding, or what Adam does to a parameter.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from drlrun.nets import CNN, CNNConfig, FrameEncoder, input_major
from drlrun.optim import Adam, flushing_denormals

MINATAR = CNNConfig(channels=[16], kernels=[3], strides=[1], hidden_sizes=[128])


def frames(shape: tuple[int, ...], dtype: type, n: int = 6, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    if dtype == np.bool_:
        return torch.from_numpy(rng.random((n, *shape)) < 0.2)
    return torch.from_numpy(rng.integers(0, 256, size=(n, *shape), dtype=np.uint8))


def plain_copy(net: CNN) -> CNN:
    """``net`` through nn.Conv2d on every layer and with row-major fully connected weights."""
    plain = copy.deepcopy(net)
    plain.encoder.first_as_matmul = False
    for layer in plain.modules():
        if isinstance(layer, nn.Linear):
            layer.weight = nn.Parameter(layer.weight.detach().contiguous())
    return plain


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8])
@pytest.mark.parametrize(("shape", "order"), [((10, 10, 4), "last"), ((4, 10, 10), "first"), ((12, 9, 3), "last")])
@pytest.mark.parametrize(("channels", "kernels", "strides"), [([16], [3], [1]), ([8, 8], [3, 2], [2, 1])])
def test_small_frames_first_layer_as_a_matmul_is_the_conv_layer(dtype, shape, order, channels, kernels, strides):
    cfg = CNNConfig(channels=channels, kernels=kernels, strides=strides, hidden_sizes=[8], channel_order=order)
    torch.manual_seed(0)
    encoder = FrameEncoder(cfg, shape, dtype)
    assert encoder.first_as_matmul  # at most 16x16 pixels
    obs = frames(shape, dtype)
    fast = encoder(obs)
    fast.square().sum().backward()
    fast_grads = [p.grad.clone() for p in encoder.parameters()]
    encoder.zero_grad()
    encoder.first_as_matmul = False
    plain = encoder(obs)
    plain.square().sum().backward()
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    for got, want in zip(fast_grads, [p.grad for p in encoder.parameters()], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert not FrameEncoder(cfg, (84, 84, 4) if order == "last" else (4, 84, 84), dtype).first_as_matmul


def test_input_major_weights_keep_values_shape_and_state_dict():
    torch.manual_seed(0)
    reference = nn.Linear(1024, 128)
    torch.manual_seed(0)
    layer = input_major(nn.Linear(1024, 128))
    assert torch.equal(layer.weight, reference.weight) and layer.weight.shape == (128, 1024)
    assert not layer.weight.is_contiguous() and layer.weight.t().is_contiguous()
    x = torch.randn(32, 1024)
    torch.testing.assert_close(layer(x), reference(x))
    # A checkpoint written before (row-major weights) loads, and what it saves has the same keys
    # and shapes; the parameter keeps its layout when loaded into.
    net = CNN(MINATAR, (10, 10, 4), 3, obs_dtype=np.bool_)
    old_style = plain_copy(net)
    torch.nn.init.normal_(old_style.torso[0].weight)
    net.load_state_dict(old_style.state_dict())
    assert net.torso[0].weight.t().is_contiguous()
    obs = frames((10, 10, 4), np.bool_)
    torch.testing.assert_close(net(obs), old_style(obs), rtol=1e-5, atol=1e-5)
    assert {k: v.shape for k, v in net.state_dict().items()} == {k: v.shape for k, v in old_style.state_dict().items()}


def test_the_fast_paths_learn_what_the_plain_layers_learn():
    """Twenty DQN-style updates (Huber loss on Q(s, a), Adam) from the same start: the fast network
    and its plain copy end with the same parameters, up to float rounding."""
    torch.manual_seed(0)
    fast = CNN(MINATAR, (10, 10, 4), 3, obs_dtype=np.bool_)
    plain = plain_copy(fast)
    optimizers = [Adam(list(net.parameters()), lr=1e-3) for net in (fast, plain)]
    rng = np.random.default_rng(1)
    for step in range(20):
        obs = frames((10, 10, 4), np.bool_, n=32, seed=step)
        actions = torch.from_numpy(rng.integers(0, 3, 32))
        targets = torch.from_numpy(rng.standard_normal(32).astype(np.float32))
        for net, optimizer in zip((fast, plain), optimizers, strict=True):
            q = net(obs).gather(1, actions.unsqueeze(1)).squeeze(1)
            optimizer.zero_grad()
            F.smooth_l1_loss(q, targets).backward()
            optimizer.step()
    for (name, a), b in zip(fast.state_dict().items(), plain.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    assert not torch.equal(fast.head.weight, CNN(MINATAR, (10, 10, 4), 3).head.weight)  # it did learn


def test_adam_on_a_transposed_parameter_is_adam_on_its_memory():
    """A parameter stored transposed is updated bit for bit as its row-major twin over the same
    memory, with its gradient in its own layout or (set by hand) in the row-major one."""
    torch.manual_seed(0)
    twin = nn.Parameter(torch.randn(7, 5))  # [in, out], row-major
    weight = nn.Parameter(twin.detach().clone().t())  # [out, in] over the same memory order
    assert weight.stride() == (1, 5)
    ours, theirs = Adam([weight], lr=1e-2), Adam([twin], lr=1e-2)
    for step in range(12):
        grad = torch.randn(7, 5)
        twin.grad = grad.clone()
        weight.grad = grad.t().contiguous() if step % 2 else grad.clone().t()  # a row-major [out, in] every other step
        ours.step()
        theirs.step()
        assert torch.equal(weight.t(), twin), step
    assert ours.state_dict()["state"][0]["exp_avg"].shape == (5, 7)
    torch.optim.Adam([nn.Parameter(weight.detach().clone())], lr=1e-2).load_state_dict(ours.state_dict())


@pytest.fixture
def one_thread():
    """drlrun's default (``torch_threads=1``): the flush flag is per thread, and with more threads
    the kernel hands part of its work to threads that keep their own."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_adam_flushes_denormal_moments_and_leaves_the_setting_as_it_was(one_thread):
    """A first moment in the denormal range with no gradient becomes 0 (torch's kernel keeps
    decaying it through the slow range); the parameter moves exactly as with torch's Adam."""
    state = {"exp_avg": torch.full((64,), 1e-39), "exp_avg_sq": torch.full((64,), 1e-6)}
    assert state["exp_avg"][0] != 0  # a denormal, not already flushed
    ours_param, torch_param = nn.Parameter(torch.ones(64)), nn.Parameter(torch.ones(64))
    ours = Adam([ours_param], lr=1e-3)
    theirs = torch.optim.Adam([torch_param], lr=1e-3, fused=True)
    saved = {"state": {0: {"step": torch.tensor(5.0), **state}}, "param_groups": [ours.state_dict()["param_groups"][0]]}
    ours.load_state_dict(saved)
    theirs.load_state_dict(copy.deepcopy(saved))
    for optimizer, param in ((ours, ours_param), (theirs, torch_param)):
        param.grad = torch.zeros(64)
        optimizer.step()
    assert not ours.exp_avgs[0].any()
    assert theirs.state[torch_param]["exp_avg"].abs().min() > 0
    assert torch.equal(ours_param, torch_param)
    assert not flushing_denormals()  # put back as it was: off
    torch.set_flush_denormal(True)
    try:
        ours_param.grad = torch.zeros(64)
        ours.step()
        assert flushing_denormals()  # and left on where it was on
    finally:
        torch.set_flush_denormal(False)
