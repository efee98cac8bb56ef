"""An independent PyTorch implementation of VAANet (the model as `docs/release.md`
describes it), for parity tests and benchmarks only. Built from stock ``torch.nn`` layers,
the way the release builds it, with the release's module names, so its state dict is the
release's checkpoint layout.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Bottleneck3d(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv3d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class BasicBlock3d(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv3d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


DEPTHS = {10: (BasicBlock3d, [1, 1, 1, 1]), 18: (BasicBlock3d, [2, 2, 2, 2]),
          34: (BasicBlock3d, [3, 4, 6, 3]), 50: (Bottleneck3d, [3, 4, 6, 3]),
          101: (Bottleneck3d, [3, 4, 23, 3]), 152: (Bottleneck3d, [3, 8, 36, 3])}


def resnet3d(depth):
    block, counts = DEPTHS[depth]
    layers = [nn.Conv3d(3, 64, 7, stride=(1, 2, 2), padding=3, bias=False),
              nn.BatchNorm3d(64), nn.ReLU(inplace=True),
              nn.MaxPool3d(kernel_size=3, stride=2, padding=1)]
    inplanes = 64
    for i, (planes, count) in enumerate(zip((64, 128, 256, 512), counts)):
        stride = 1 if i == 0 else 2
        down = None
        if stride != 1 or inplanes != planes * block.expansion:
            down = nn.Sequential(
                nn.Conv3d(inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm3d(planes * block.expansion))
        blocks = [block(inplanes, planes, stride, down)]
        inplanes = planes * block.expansion
        blocks += [block(inplanes, planes) for _ in range(1, count)]
        layers.append(nn.Sequential(*blocks))
    seq = nn.Sequential(*layers)
    for m in seq.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
    return seq


class BasicBlock2d(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


def audio_resnet18():
    layers = [nn.Conv2d(1, 64, (7, 1), stride=(2, 1), padding=(3, 0), bias=False),
              nn.BatchNorm2d(64), nn.ReLU(inplace=True),
              nn.MaxPool2d(kernel_size=3, stride=2, padding=1)]
    inplanes = 64
    for i, planes in enumerate((64, 128, 256, 512)):
        stride = 1 if i == 0 else 2
        down = None
        if stride != 1 or inplanes != planes:
            down = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                                 nn.BatchNorm2d(planes))
        layers.append(nn.Sequential(BasicBlock2d(inplanes, planes, stride, down),
                                    BasicBlock2d(planes, planes)))
        inplanes = planes
    layers.append(nn.AvgPool2d(kernel_size=(8, 2)))
    return nn.Sequential(*layers)


class Attention(nn.Module):
    def __init__(self, in_channels, fc_features, fc_bias):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(in_channels, 1, 1, bias=False),
                                  nn.BatchNorm1d(1), nn.Tanh())
        self.fc = nn.Linear(fc_features, fc_features, bias=fc_bias)


def _init_head_conv(seq):
    for m in seq.modules():
        if isinstance(m, nn.Conv1d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")


class TorchVAANet(nn.Module):
    def __init__(self, snippet_duration=16, sample_size=112, n_classes=8, seq_len=12,
                 audio_embed_size=256, audio_n_segments=16, resnet_depth=101):
        super().__init__()
        self.seq_len = seq_len
        self.audio_n_segments = audio_n_segments
        self.audio_embed_size = audio_embed_size
        self.resnet = resnet3d(resnet_depth)
        for p in self.resnet.parameters():
            p.requires_grad = False
        channels = 2048 if DEPTHS[resnet_depth][0] is Bottleneck3d else 512
        with torch.no_grad():
            probe = torch.zeros(1, 3, snippet_duration, sample_size, sample_size)
            self.resnet.eval()
            positions = self.resnet(probe).flatten(2).shape[2]
            self.resnet.train()
        self.conv0 = nn.Sequential(nn.Conv1d(channels, 512, 1), nn.BatchNorm1d(512), nn.ReLU())
        self.sa_net = Attention(512, positions, fc_bias=False)
        self.cwa_net = Attention(positions, 512, fc_bias=False)
        self.ta_net = Attention(512, seq_len, fc_bias=True)
        self.fc = nn.Linear(512, n_classes)
        for seq in (self.conv0, self.sa_net, self.cwa_net, self.ta_net):
            _init_head_conv(seq)
        nn.init.constant_(self.ta_net.fc.bias, 1.0)
        self.a_resnet = audio_resnet18()
        self.a_fc = nn.Sequential(nn.Linear(512, audio_embed_size),
                                  nn.BatchNorm1d(audio_embed_size), nn.Tanh())
        self.aa_net = Attention(audio_embed_size, audio_n_segments, fc_bias=True)
        self.av_fc = nn.Linear(512 + audio_embed_size, n_classes)

    def forward(self, visual, audio):
        fSCT, alpha, beta, At = self.visual_head(self.backbone(visual))
        fA = self.audio_stream(audio)
        logits = self.av_fc(torch.cat([fSCT, fA], dim=1))
        return logits, alpha, beta, At

    def backbone(self, visual):
        """The frozen 3D ResNet's features ``[S*B, 2048, P]``, snippet-major rows."""
        visual = visual.to(self.av_fc.weight.dtype)
        b, s = visual.shape[:2]
        x = visual / 255.0 - 100.0 / 255.0
        x = x.transpose(0, 1).contiguous().view(s * b, *visual.shape[2:])
        with torch.no_grad():
            f0 = self.resnet(x)
        return f0.flatten(2)

    def visual_head(self, f0):
        """conv0 and the spatial, channel-wise and temporal attention on ``backbone``'s
        features: ``(fSCT, alpha, beta, At)``."""
        s = self.seq_len
        b = f0.shape[0] // s
        feat = self.conv0(f0)
        p = feat.shape[2]
        As = self.sa_net.conv(feat).squeeze(1)
        As = F.softmax(self.sa_net.fc(As), dim=1) * p
        alpha = As.view(s, b, p)
        fS = feat * As.unsqueeze(1)
        Ac = self.cwa_net.conv(fS.transpose(1, 2)).squeeze(1)
        Ac = F.softmax(self.cwa_net.fc(Ac), dim=1) * 512
        beta = Ac.view(s, b, 512)
        fSC = (fS * Ac.unsqueeze(2)).mean(dim=2).view(s, b, 512).permute(1, 2, 0)
        At = F.relu(self.ta_net.fc(self.ta_net.conv(fSC).squeeze(1)))
        fSCT = (fSC * At.unsqueeze(1)).mean(dim=2)
        return fSCT, alpha, beta, At

    def audio_stream(self, audio):
        audio = audio.to(self.av_fc.weight.dtype)
        b = audio.shape[0]
        g = self.audio_n_segments
        seg = audio.shape[1] // g
        a = torch.stack([audio[:, i * seg:(i + 1) * seg] for i in range(g)], dim=0)
        a = a.view(g * b, 1, seg, audio.shape[2])
        a = self.a_resnet(a).flatten(1)
        a = self.a_fc(a).view(g, b, self.audio_embed_size).permute(1, 2, 0)
        Aa = F.relu(self.aa_net.fc(self.aa_net.conv(a).squeeze(1)))
        return (a * Aa.unsqueeze(1)).mean(dim=2)

def pcce_loss(logits, target, positive, lambda_0=0.5):
    """Polarity-consistent cross-entropy (`docs/release.md`, "The loss")."""
    ce = F.cross_entropy(logits, target, reduction="none")
    pos = torch.zeros(logits.shape[1], dtype=torch.bool)
    pos[list(positive)] = True
    pred = logits.argmax(dim=1)
    weight = 1.0 + lambda_0 * (pos[pred] != pos[target]).to(logits.dtype)
    return (ce * weight).mean()
