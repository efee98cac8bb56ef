"""The audio stream's 2D ResNet-18 (torchvision's layout) over MFCC segments.

Its first convolution is the release's Conv2d(1, 64, (7, 1), stride (2, 1), padding (3, 0)),
and it ends with AvgPool2d((8, 2)). It runs channels last, on ``[N, H, W, C]``, with the
3D ResNets' ``BasicBlock`` in two dimensions. ``audio_resnet18`` returns the
``nn.Sequential`` (a ``FusedSequential``: bn1 and relu run as one kernel) whose
children 0-8 are conv1, bn1, relu, maxpool, layer1..layer4, avgpool (listed by name
in its ``child_names``): the release's ``a_resnet`` key for key, so torchvision's
ImageNet weights load into all of them but the replaced conv1.
"""
from jittor import nn

from models.layers import BatchNorm, Conv2d, max_pool
from models.resnet3d import BasicBlock, FusedSequential, named_sequential


def _bn(channels):
    return BatchNorm(channels, axis=3)  # channels last


class MaxPool2d(nn.Module):
    """MaxPool2d(kernel 3, stride 2, padding 1)."""

    def execute(self, x):
        return max_pool(x, (3, 3), (2, 2), (1, 1), axes=(1, 2))


class AvgPool2d(nn.Module):
    """AvgPool2d with stride equal to its kernel (floor mode), as a reshaped mean; Jittor's
    pooling refuses a kernel as large as its input, which is exactly the case here."""

    def __init__(self, kernel_size):
        super().__init__()
        self.kernel_size = kernel_size

    def execute(self, x):
        kh, kw = self.kernel_size
        n, h, w, c = x.shape
        ho, wo = h // kh, w // kw
        x = x[:, :ho * kh, :wo * kw].reshape(n, ho, kh, wo, kw, c)
        return x.mean(dims=(2, 4))


def _make_layer(inplanes, planes, blocks, stride):
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(Conv2d(inplanes, planes, 1, stride), _bn(planes))
    layers = [BasicBlock(inplanes, planes, stride, downsample, dims=2)]
    layers += [BasicBlock(planes, planes, dims=2) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def audio_resnet18():
    return named_sequential(FusedSequential, {
        "conv1": Conv2d(1, 64, (7, 1), (2, 1), (3, 0), init="default"),
        "bn1": _bn(64), "relu": nn.ReLU(), "maxpool": MaxPool2d(),
        "layer1": _make_layer(64, 64, 2, 1), "layer2": _make_layer(64, 128, 2, 2),
        "layer3": _make_layer(128, 256, 2, 2), "layer4": _make_layer(256, 512, 2, 2),
        "avgpool": AvgPool2d((8, 2))})
