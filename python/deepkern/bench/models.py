"""Models of the training benchmarks, written once against a PyTorch-shaped ``nn`` module (deepkern's
or torch's), so the deepkern model and its PyTorch twin are the same code with the same parameter
names; and :func:`forward_flops`, the FLOP count of one forward pass."""

from __future__ import annotations

from typing import Sequence, Tuple

#: ResNet-18's stages: BasicBlocks per stage and each stage's channels.
RESNET18_BLOCKS = (2, 2, 2, 2)
RESNET18_WIDTHS = (64, 128, 256, 512)


def resnet18(nn, num_classes: int = 10, widths: Sequence[int] = RESNET18_WIDTHS, in_channels: int = 3):
    """A ResNet-18-shaped CNN built from ``nn`` (``deepkern.nn`` or ``torch.nn``): torchvision's
    ``resnet18`` layout and parameter names (a 7x7/2 convolution, batch norm, ReLU, 3x3/2 max pool,
    four stages of two BasicBlocks (3x3 convolutions with batch norm, a 1x1/2 projection with batch
    norm where the shape changes) whose channels are ``widths``, global average pool, a linear
    classifier). ``widths`` other than ResNet-18's make the same network narrower (tests)."""
    if len(widths) != len(RESNET18_BLOCKS) or any(int(w) < 1 for w in widths):
        raise ValueError(f"resnet18: widths must be {len(RESNET18_BLOCKS)} positive channel counts, got {widths}")

    class BasicBlock(nn.Module):
        """Two 3x3 convolutions with batch norm, added to the input (or its 1x1 projection)."""

        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU()
            self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.projects = stride != 1 or cin != cout
            if self.projects:
                self.downsample = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
                )

        def forward(self, x):
            identity = self.downsample(x) if self.projects else x
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)) + identity)

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(in_channels, widths[0], 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(widths[0])
            self.relu = nn.ReLU()
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
            cin = widths[0]
            for stage, (blocks, cout) in enumerate(zip(RESNET18_BLOCKS, widths)):
                stride = 1 if stage == 0 else 2
                layers = [BasicBlock(cin if b == 0 else cout, cout, stride if b == 0 else 1) for b in range(blocks)]
                setattr(self, f"layer{stage + 1}", nn.Sequential(*layers))
                cin = cout
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.flatten = nn.Flatten()
            self.fc = nn.Linear(cin, num_classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(self.flatten(self.avgpool(x)))

    return ResNet18()


def resnet18_fusion_groups(model) -> list:
    """The layer groups of :func:`resnet18`'s ``model`` that ``deepkern.nn.utils.fuse_modules`` (or
    torch.ao's) fuses for inference: each convolution with its batch norm, and the ReLU that follows
    directly (the stem's and each block's first); the projections are Sequentials, which deepkern
    fuses by itself."""
    groups = [["conv1", "bn1", "relu"]]
    for name, module in model.named_modules():
        if hasattr(module, "conv2") and hasattr(module, "bn2"):  # a BasicBlock
            groups += [[f"{name}.conv1", f"{name}.bn1", f"{name}.relu"], [f"{name}.conv2", f"{name}.bn2"]]
    return groups


def _lstm_flops(module, inputs: tuple) -> float:
    """2 x the multiply-adds of an LSTM's two GEMMs per step, over its layers and directions."""
    x = inputs[0]
    steps, batch = (x.shape[1], x.shape[0]) if module.batch_first else (x.shape[0], x.shape[1])
    dirs = 2 if module.bidirectional else 1
    h, total = module.hidden_size, 0.0
    for layer in range(module.num_layers):
        i = module.input_size if layer == 0 else h * dirs
        total += dirs * 2.0 * steps * batch * 4 * h * (i + h)
    return total


def forward_flops(model, lib, x) -> float:
    """FLOP of ``model(x)``: twice the multiply-adds of its ``nn.Conv2d``, ``nn.Linear`` and
    ``nn.LSTM`` layers, counted by forward hooks on one call in evaluation mode without autograd
    (``lib`` is the model's library: deepkern or torch); pointwise ops, pooling and normalization are
    left out."""
    nn, total, training = lib.nn, [0.0], model.training

    def count(module, inputs: Tuple, output) -> None:
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total[0] += 2.0 * output.numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
            total[0] += 2.0 * output.numel() * module.in_features
        else:
            total[0] += _lstm_flops(module, inputs)

    layers = (nn.Conv2d, nn.Linear, nn.LSTM)
    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, layers)]
    model.eval()
    try:
        with lib.no_grad():
            model(x)
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    return total[0]
