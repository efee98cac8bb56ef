"""VAANet: visual-audio attention network (Zhao et al., AAAI 2020), as in the PyTorch release.

Visual stream: a frozen 3D ResNet over ``seq_len`` snippets, then spatial (``sa_net``),
channel-wise (``cwa_net``) and temporal (``ta_net``) attention. Audio stream: a 2D
ResNet-18 over ``audio_n_segments`` MFCC segments with temporal attention (``aa_net``).
``av_fc`` classifies the concatenation. Module and parameter names are the release's, so
``state_dict()`` keys equal its checkpoints' keys. The layers follow docs/release.md ("The
model"); ``model.py`` builds one from the command-line options or a checkpoint.

    model = VAANet(n_classes=8, seq_len=12, resnet_depth=101)
    logits, alpha, beta, gamma = model(visual, audio)
    # visual [B, S, 3, T, H, W] (uint8 or float32, 0..255), audio [B, 4096, 32]
    out = model.outputs(visual, audio)    # what the forward computes, all of it:
    out.logits, out.fused                 # fused [B, 512 + audio_embed_size], logits = av_fc(fused)
    out.alpha, out.beta, out.gamma        # as the forward returns them
    out.audio_attention                   # [B, audio_n_segments], which the forward drops
"""
from collections import namedtuple

from core.jittor_setup import jt
from jittor import nn

from models.layers import BatchNorm, Conv1d, Linear
from models.resnet2d import audio_resnet18
from models.resnet3d import FusedSequential, output_channels, output_positions, resnet3d_backbone


#: Everything one forward computes: the logits, the fused vector ``av_fc`` classifies
#: (its first 512 columns the visual vector fSCT, the rest the audio vector fA), the
#: spatial (alpha [S, B, P]), channel (beta [S, B, 512]), temporal (gamma [B, S]) and
#: audio (audio_attention [B, audio_n_segments]) attention.
Outputs = namedtuple("Outputs", "logits fused alpha beta gamma audio_attention")


class _Attention(nn.Module):
    """conv: Conv1d(k=1, no bias) to one channel + BN1d(1) + Tanh; then fc. ``init``: the
    Conv1d's (see ``Conv1d``)."""

    def __init__(self, in_channels, fc_features, fc_bias, init):
        super().__init__()
        self.conv = nn.Sequential(Conv1d(in_channels, 1, bias=False, init=init), BatchNorm(1),
                                  nn.Tanh())
        self.fc = Linear(fc_features, fc_features, bias=fc_bias)

    def scores(self, x):
        """``x [N, C, L]`` -> ``fc(tanh(bn(conv(x))))`` of shape ``[N, L]``."""
        return self.fc(self.conv(x)[:, 0, :])


class VAANet(nn.Module):
    def __init__(self, snippet_duration=16, sample_size=112, n_classes=8, seq_len=12,
                 audio_embed_size=256, audio_n_segments=16, resnet_depth=101):
        super().__init__()
        self.snippet_duration = snippet_duration
        self.sample_size = sample_size
        self.n_classes = n_classes
        self.seq_len = seq_len
        self.audio_embed_size = audio_embed_size
        self.audio_n_segments = audio_n_segments
        self.ft_channels = 512
        self.n_positions = output_positions(snippet_duration, sample_size)

        self.resnet = resnet3d_backbone(resnet_depth)
        for p in self.resnet.parameters():
            p.requires_grad = False
        self.conv0 = FusedSequential(
            Conv1d(output_channels(resnet_depth), self.ft_channels, init="fan_out"),
            BatchNorm(self.ft_channels), nn.ReLU())
        # the release re-initialises the visual heads' Conv1d weights (Kaiming-normal,
        # fan_out); every other new layer keeps PyTorch's default
        self.sa_net = _Attention(self.ft_channels, self.n_positions, False, "fan_out")
        self.cwa_net = _Attention(self.n_positions, self.ft_channels, False, "fan_out")
        self.ta_net = _Attention(self.ft_channels, seq_len, True, "fan_out")
        self.ta_net.fc.bias.assign(jt.ones(seq_len))
        self.fc = Linear(self.ft_channels, n_classes)  # unused, as in the release

        self.a_resnet = audio_resnet18()
        self.a_fc = nn.Sequential(Linear(512, audio_embed_size),
                                  BatchNorm(audio_embed_size), nn.Tanh())
        self.aa_net = _Attention(audio_embed_size, audio_n_segments, True, "default")
        self.av_fc = Linear(self.ft_channels + audio_embed_size, n_classes)

    def unused_parameters(self):
        """The parameters the forward never uses (``fc``'s): they get no gradient, so the
        release's Adam leaves them as they are."""
        return [self.fc.weight, self.fc.bias]

    def train(self):
        """Training mode for every submodule. Unlike Jittor's ``Module.train``/``eval``, the
        mode never touches ``requires_grad``: the backbone stays frozen, the rest trainable."""
        return self._set_mode(True)

    def eval(self):
        return self._set_mode(False)

    def _set_mode(self, is_train):
        for module in self.modules():
            module.is_train = is_train
        return self

    def execute(self, visual, audio):
        out = self.outputs(visual, audio)
        return out.logits, out.alpha, out.beta, out.gamma

    def outputs(self, visual, audio):
        """The forward with everything it computes (``Outputs``); ``execute`` returns a
        part of it, so the two cannot differ. The audio attention costs nothing more:
        the forward computes it anyway."""
        fSCT, alpha, beta, gamma = self.visual_stream(visual)
        fA, audio_attention = self.audio_stream(audio)
        fused = jt.concat([fSCT, fA], dim=1)
        return Outputs(self.av_fc(fused), fused, alpha, beta, gamma, audio_attention)

    def visual_stream(self, visual):
        b, s, c, t, h, w = visual.shape
        # [B, S, 3, T, H, W] -> [S*B, T, 3, H, W]: snippet-major rows (s*B + b), and the
        # time-before-channel layout of the backbone's Conv3d.
        x = visual.transpose(1, 0, 3, 2, 4, 5).reshape(s * b, t, c, h, w)
        x = x.float32() / 255.0 - 100.0 / 255.0
        with jt.no_grad():
            f0 = self.resnet(x)
        n, t2, k, h2, w2 = f0.shape
        # [N, T', 2048, H', W'] -> [N, 2048, T'*H'*W'] (T' is 1 at the release's sizes)
        f0 = f0.transpose(0, 2, 1, 3, 4).reshape(n, k, t2 * h2 * w2).stop_grad()

        F = self.conv0(f0)                                             # [N, 512, P]
        p = F.shape[2]
        As = nn.softmax(self.sa_net.scores(F), dim=1) * p              # [N, P]
        alpha = As.reshape(s, b, p)
        fS = F * As.unsqueeze(1)

        c_ft = self.ft_channels
        Ac = nn.softmax(self.cwa_net.scores(fS.transpose(0, 2, 1)), dim=1) * c_ft   # [N, 512]
        beta = Ac.reshape(s, b, c_ft)
        fSC = (fS * Ac.unsqueeze(2)).mean(dim=2)                       # [N, 512]
        fSC = fSC.reshape(s, b, c_ft).transpose(1, 2, 0)               # [B, 512, S]

        At = nn.relu(self.ta_net.scores(fSC))                          # [B, S]
        fSCT = (fSC * At.unsqueeze(1)).mean(dim=2)                     # [B, 512]
        return fSCT, alpha, beta, At

    def audio_stream(self, audio):
        b, length, n_mfcc = audio.shape
        g = self.audio_n_segments
        seg = length // g
        # [B, 4096, 32] -> [16*B, 256, 32, 1], segment-major rows (g*B + b), channels last
        x = audio[:, :g * seg].reshape(b, g, seg, n_mfcc).transpose(1, 0, 2, 3)
        x = x.reshape(g * b, seg, n_mfcc, 1)
        x = self.a_resnet(x).transpose(0, 3, 1, 2).reshape(g * b, -1)  # [16*B, 512]
        x = self.a_fc(x)                                               # [16*B, 256]
        x = x.reshape(g, b, self.audio_embed_size).transpose(1, 2, 0)  # [B, 256, 16]
        Aa = nn.relu(self.aa_net.scores(x))                            # [B, 16]
        return (x * Aa.unsqueeze(1)).mean(dim=2), Aa                   # [B, 256], [B, 16]

