"""ResNet encoders with a one-channel (grayscale EM) input.

Parameter names match empanada's released files: ``conv1``/``bn1`` (the stem) and ``layer1`` ..
``layer4`` (the four stages). With ``fused=True`` the encoder has the structure of those files:
every convolution carries a bias, the batch norms are ``Identity`` and a convolution followed by a
ReLU is a ``Sequential(conv, relu)``, so names read ``conv1.0.weight``,
``layer1.0.conv1.0.bias``, ``layer1.0.conv3.weight``, ``layer1.0.downsample.0.bias``.

``forward`` returns the feature pyramid ``[stem, stage1, stage2, stage3, stage4]`` at strides
4, 4, 8, 16 and 32 (stage 4 at 16 when ``output_stride=16``, which dilates it instead).
"""

from __future__ import annotations


import torch
from torch import nn

from empanada_desktop.backend.models.blocks import on_meta


def _conv(
    nin: int, nout: int, kernel_size: int, stride: int = 1, dilation: int = 1, *, fused: bool, relu: bool
) -> nn.Module:
    padding = dilation * (kernel_size - 1) // 2
    conv = nn.Conv2d(nin, nout, kernel_size, stride, padding, dilation=dilation, bias=fused)
    if fused and relu:
        return nn.Sequential(conv, nn.ReLU(inplace=True))
    return conv


def _norm(channels: int, *, fused: bool) -> nn.Module:
    return nn.Identity() if fused else nn.BatchNorm2d(channels)


def _fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Return a convolution with bias equal to ``bn(conv(x))`` (batch norm in eval mode)."""
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        dilation=conv.dilation, groups=conv.groups, bias=True,
    ).to(conv.weight.device, conv.weight.dtype)
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.bias.copy_(bn.bias + (bias - bn.running_mean) * scale)
    return fused


def _fuse_pair(owner: nn.Module, conv_name: str, bn_name: str, relu: bool) -> None:
    conv, bn = getattr(owner, conv_name), getattr(owner, bn_name)
    if not isinstance(bn, nn.BatchNorm2d):
        return  # already fused
    fused = _fuse_conv_bn(conv, bn)
    setattr(owner, conv_name, nn.Sequential(fused, nn.ReLU(inplace=True)) if relu else fused)
    setattr(owner, bn_name, nn.Identity())


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, nin: int, width: int, stride: int = 1, dilation: int = 1,
                 first_dilation: int = 1, *, fused: bool = False) -> None:
        super().__init__()
        nout = width * self.expansion
        self.conv1 = _conv(nin, width, 3, stride, first_dilation, fused=fused, relu=True)
        self.bn1 = _norm(width, fused=fused)
        self.conv2 = _conv(width, nout, 3, 1, dilation, fused=fused, relu=False)
        self.bn2 = _norm(nout, fused=fused)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(nin, nout, stride, fused=fused)
        self.fused = fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(self.conv1(x))
        if not self.fused:  # a fused conv1 ends in its own ReLU
            out = self.relu(out)
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))

    def fuse_batchnorm(self) -> None:
        _fuse_pair(self, "conv1", "bn1", relu=True)
        _fuse_pair(self, "conv2", "bn2", relu=False)
        _fuse_downsample(self)
        self.fused = True


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4) with a residual connection (ResNet-50)."""

    expansion = 4

    def __init__(self, nin: int, width: int, stride: int = 1, dilation: int = 1,
                 first_dilation: int = 1, *, fused: bool = False) -> None:
        super().__init__()
        nout = width * self.expansion
        self.conv1 = _conv(nin, width, 1, fused=fused, relu=True)
        self.bn1 = _norm(width, fused=fused)
        self.conv2 = _conv(width, width, 3, stride, first_dilation, fused=fused, relu=True)
        self.bn2 = _norm(width, fused=fused)
        self.conv3 = _conv(width, nout, 1, fused=fused, relu=False)
        self.bn3 = _norm(nout, fused=fused)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(nin, nout, stride, fused=fused)
        self.fused = fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(self.conv1(x))
        if not self.fused:  # fused conv1 and conv2 end in their own ReLU
            out = self.relu(out)
        out = self.bn2(self.conv2(out))
        if not self.fused:
            out = self.relu(out)
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))

    def fuse_batchnorm(self) -> None:
        _fuse_pair(self, "conv1", "bn1", relu=True)
        _fuse_pair(self, "conv2", "bn2", relu=True)
        _fuse_pair(self, "conv3", "bn3", relu=False)
        _fuse_downsample(self)
        self.fused = True


def _downsample(nin: int, nout: int, stride: int, *, fused: bool) -> nn.Module:
    if stride == 1 and nin == nout:
        return nn.Identity()
    return nn.Sequential(_conv(nin, nout, 1, stride, fused=fused, relu=False), _norm(nout, fused=fused))


def _fuse_downsample(block: nn.Module) -> None:
    downsample = block.downsample
    if isinstance(downsample, nn.Sequential) and isinstance(downsample[1], nn.BatchNorm2d):
        block.downsample = nn.Sequential(_fuse_conv_bn(downsample[0], downsample[1]), nn.Identity())


class ResNet(nn.Module):
    """A ResNet without the classifier, returning its feature pyramid.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        depths: number of blocks in each of the four stages.
        output_stride: 32, or 16 to dilate stage 4 instead of striding it (Panoptic-DeepLab).
        in_channels: image channels (1 for EM).
        fused: build the batch-norm-fused structure of empanada's released files.
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], depths: tuple[int, int, int, int],
                 output_stride: int = 32, in_channels: int = 1, fused: bool = False) -> None:
        super().__init__()
        if output_stride not in (16, 32):
            raise ValueError(f"output_stride must be 16 or 32, got {output_stride}")
        self.fused = fused
        self.widths = [64 * 2**i * block.expansion for i in range(4)]
        self.conv1 = _conv(in_channels, 64, 7, 2, fused=fused, relu=True)
        self.bn1 = _norm(64, fused=fused)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._nin = 64
        self._dilation = 1
        self.layer1 = self._make_stage(block, 64, depths[0], 1, dilate=False)
        self.layer2 = self._make_stage(block, 128, depths[1], 2, dilate=False)
        self.layer3 = self._make_stage(block, 256, depths[2], 2, dilate=False)
        self.layer4 = self._make_stage(block, 512, depths[3], 2, dilate=output_stride == 16)
        self._init_weights()

    def _make_stage(self, block, width: int, depth: int, stride: int, dilate: bool) -> nn.Sequential:
        if dilate:
            self._dilation *= stride
            stride = 1
        # The first block of a dilated stage already dilates, as in empanada's ResNet (torchvision
        # keeps the previous stage's dilation there). MitoNet_v1's layer4.0.conv2: dilation 2.
        first_dilation = self._dilation
        blocks = [block(self._nin, width, stride, self._dilation, first_dilation, fused=self.fused)]
        self._nin = width * block.expansion
        for _ in range(1, depth):
            blocks.append(block(self._nin, width, 1, self._dilation, self._dilation, fused=self.fused))
        return nn.Sequential(*blocks)

    def _init_weights(self) -> None:
        if on_meta(self):
            return
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # Zero-init the last norm of each residual branch: blocks start as identities.
        for module in self.modules():
            if isinstance(module, Bottleneck) and isinstance(module.bn3, nn.BatchNorm2d):
                nn.init.zeros_(module.bn3.weight)
            elif isinstance(module, BasicBlock) and isinstance(module.bn2, nn.BatchNorm2d):
                nn.init.zeros_(module.bn2.weight)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = self.bn1(self.conv1(x))
        if not self.fused:  # a fused conv1 ends in its own ReLU
            stem = self.relu(stem)
        stem = self.maxpool(stem)
        f1 = self.layer1(stem)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [stem, f1, f2, f3, f4]

    def fuse_batchnorm(self) -> None:
        """Fold every batch norm into the convolution before it (in place; uses running stats)."""
        if self.fused:
            return
        _fuse_pair(self, "conv1", "bn1", relu=True)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                block.fuse_batchnorm()
        self.fused = True


_DEPTHS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}

ENCODERS: tuple[str, ...] = tuple(_DEPTHS)


def build_encoder(name: str, *, output_stride: int = 32, fused: bool = False) -> ResNet:
    """Build encoder ``name`` (one of ``ENCODERS``); unknown names raise ``KeyError``."""
    block, depths = _DEPTHS[name]
    return ResNet(block, depths, output_stride=output_stride, fused=fused)


