"""3D ResNets of Hara et al. (shortcut "B"), the visual backbone of VAANet.

The backbone takes and returns clips laid out ``[N, T, C, H, W]``; inside, they travel
channels last, ``[N, T, H, W, C]``, where oneDNN/cuDNN run NHWC convolutions without reorders
and a 1x1x1 convolution is one matrix product (see ``models.layers.Conv3d``).
``resnet3d_backbone`` returns the ``nn.Sequential`` whose children 0-7 are conv1, bn1, relu,
maxpool, layer1..layer4 — the release's ``resnet`` (avgpool and fc dropped) key for key.
Its ``child_names`` lists those names in order: the release's state dict numbers the
children (``resnet.4`` is layer1), Hara et al.'s Kinetics checkpoints name them, and the
weight adapter in ``model.py`` goes from one to the other through this list.
Each block's last BatchNorm also adds the shortcut and applies the ReLU, in one kernel.
"""
from jittor import nn

from models.layers import BatchNorm, Conv2d, Conv3d, max_pool

DEPTHS = {
    10: ("basic", [1, 1, 1, 1]),
    18: ("basic", [2, 2, 2, 2]),
    34: ("basic", [3, 4, 6, 3]),
    50: ("bottleneck", [3, 4, 6, 3]),
    101: ("bottleneck", [3, 4, 23, 3]),
    152: ("bottleneck", [3, 8, 36, 3]),
}


def _bn(channels):
    return BatchNorm(channels, axis=4)  # channels last


class BasicBlock(nn.Module):
    """Two 3x3x3 convolutions with BatchNorm and a shortcut, on channels-last clips; with
    ``dims=2``, 3x3 convolutions on channels-last images (the audio ResNet-18's block)."""
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, dims=3):
        super().__init__()
        conv = Conv3d if dims == 3 else Conv2d
        self.conv1 = conv(inplanes, planes, 3, stride, 1)
        self.bn1 = BatchNorm(planes, axis=dims + 1)
        self.conv2 = conv(planes, planes, 3, 1, 1)
        self.bn2 = BatchNorm(planes, axis=dims + 1)
        self.downsample = downsample

    def execute(self, x):
        out = self.bn1(self.conv1(x), relu=True)
        out = self.conv2(out)
        residual = self.downsample(x) if self.downsample is not None else x
        return self.bn2(out, relu=True, residual=residual)  # relu(bn2(out) + residual)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = Conv3d(inplanes, planes, 1)
        self.bn1 = _bn(planes)
        self.conv2 = Conv3d(planes, planes, 3, stride, 1)
        self.bn2 = _bn(planes)
        self.conv3 = Conv3d(planes, planes * 4, 1)
        self.bn3 = _bn(planes * 4)
        self.downsample = downsample

    def execute(self, x):
        out = self.bn1(self.conv1(x), relu=True)
        out = self.bn2(self.conv2(out), relu=True)
        out = self.conv3(out)
        residual = self.downsample(x) if self.downsample is not None else x
        return self.bn3(out, relu=True, residual=residual)  # relu(bn3(out) + residual)


class MaxPool3d(nn.Module):
    """MaxPool3d(kernel 3, stride 2, padding 1) on ``[N, T, H, W, C]``."""

    def execute(self, x):
        return max_pool(x, (3, 3, 3), (2, 2, 2), (1, 1, 1), axes=(1, 2, 3))


class FusedSequential(nn.Sequential):
    """An ``nn.Sequential`` (same children, same state-dict keys) that runs a BatchNorm
    followed by a ReLU as one BatchNorm call with the ReLU fused in."""

    def execute(self, x):
        layers = list(self.layers.values())
        i = 0
        while i < len(layers):
            if (isinstance(layers[i], BatchNorm) and i + 1 < len(layers)
                    and isinstance(layers[i + 1], nn.ReLU)):
                x = layers[i](x, relu=True)
                i += 2
            else:
                x = layers[i](x)
                i += 1
        return x


class ChannelsLastSequential(FusedSequential):
    """A ``FusedSequential`` that takes and returns ``[N, T, C, H, W]`` and runs its
    children on ``[N, T, H, W, C]``."""

    def execute(self, x):
        return super().execute(x.transpose(0, 1, 3, 4, 2)).transpose(0, 1, 4, 2, 3)


def _make_layer(block, inplanes, planes, blocks, stride):
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            Conv3d(inplanes, planes * block.expansion, 1, stride),
            _bn(planes * block.expansion))
    layers = [block(inplanes, planes, stride, downsample)]
    layers += [block(planes * block.expansion, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def named_sequential(cls, children):
    """``cls(*children.values())`` that remembers the children's names as ``child_names``."""
    seq = cls(*children.values())
    seq.child_names = tuple(children)
    return seq


def resnet3d_backbone(depth=101):
    """conv1, bn1, relu, maxpool, layer1..layer4 of a 3D ResNet of the given depth."""
    if depth not in DEPTHS:
        raise ValueError(f"resnet_depth must be one of {sorted(DEPTHS)}, got {depth}")
    kind, counts = DEPTHS[depth]
    block = BasicBlock if kind == "basic" else Bottleneck
    children = {"conv1": Conv3d(3, 64, 7, (1, 2, 2), 3), "bn1": _bn(64), "relu": nn.ReLU(),
                "maxpool": MaxPool3d()}
    inplanes = 64
    for i, (planes, count) in enumerate(zip((64, 128, 256, 512), counts)):
        children[f"layer{i + 1}"] = _make_layer(block, inplanes, planes, count, 1 if i == 0 else 2)
        inplanes = planes * block.expansion
    return named_sequential(ChannelsLastSequential, children)


def output_channels(depth):
    return 512 * (1 if DEPTHS[depth][0] == "basic" else 4)


def output_grid(snippet_duration, sample_size):
    """``(T', H', W')``: the backbone's output map for one clip; the spatial attention's
    positions are its cells in that (row-major) order."""
    def down(size, k, s, p):
        return (size + 2 * p - k) // s + 1

    t = down(down(snippet_duration, 7, 1, 3), 3, 2, 1)
    hw = down(down(sample_size, 7, 2, 3), 3, 2, 1)
    for _ in range(3):
        t, hw = down(t, 3, 2, 1), down(hw, 3, 2, 1)
    return t, hw, hw


def output_positions(snippet_duration, sample_size):
    """Positions (T' * H' * W') of the backbone's output map for one clip."""
    t, h, w = output_grid(snippet_duration, sample_size)
    return t * h * w
