"""VAANet at small sizes: shapes, key layout, frozen backbone, gradients, loss and Adam."""
import copy

import numpy as np
import pytest
import torch

from core.jittor_setup import jt
from core.loss import get_loss
from tests.helpers import polarity_mask, rel_l2
from core.optimizer import Adam
from models.vaanet import VAANet
from tests.torch_reference import TorchVAANet, pcce_loss


def _inputs(b, s, t, size, seed=0):
    rng = np.random.default_rng(seed)
    visual = rng.integers(0, 256, (b, s, 3, t, size, size), dtype=np.uint8)
    audio = (rng.standard_normal((b, 4096, 32)) * 20).astype(np.float32)
    return visual, audio


@pytest.mark.parametrize("t,size,seq_len,n_classes", [(8, 64, 3, 6), (4, 80, 1, 8)])
def test_shapes_and_gradients_at_other_sizes(t, size, seq_len, n_classes):
    model = VAANet(snippet_duration=t, sample_size=size, n_classes=n_classes,
                   seq_len=seq_len, resnet_depth=10)
    positions = ((size + 1) // 2 + 1) // 2  # after conv1 and maxpool
    for _ in range(3):
        positions = (positions + 1) // 2
    assert model.n_positions == positions ** 2
    visual, audio = _inputs(2, seq_len, t, size)
    logits, alpha, beta, gamma = model.train()(jt.array(visual), jt.array(audio))
    assert logits.shape == [2, n_classes]
    assert alpha.shape == [seq_len, 2, positions ** 2]
    assert beta.shape == [seq_len, 2, 512]
    assert gamma.shape == [2, seq_len]
    # softmax * P sums to P over positions, softmax * 512 over channels
    np.testing.assert_allclose(alpha.numpy().sum(-1), positions ** 2, rtol=1e-5)
    np.testing.assert_allclose(beta.numpy().sum(-1), 512, rtol=1e-5)

    # every gradient against the PyTorch reference's in float64, on the same weights:
    # within twice the reference's own worst float32 gradient noise (both CPU backends)
    target = np.array([0, 1])
    loss = get_loss(_opt("ce", n_classes))(logits, jt.array(target))
    names = [k for k, v in model.state_dict().items() if v.requires_grad]
    grads = dict(zip(names, jt.grad(loss, [model.state_dict()[k] for k in names])))
    ref = TorchVAANet(snippet_duration=t, sample_size=size, n_classes=n_classes,
                      seq_len=seq_len, resnet_depth=10)
    ref.load_state_dict({k: torch.from_numpy(np.array(v.numpy())).reshape(ref.state_dict()[k].shape)
                         for k, v in model.state_dict().items()})
    g64 = _torch_gradients(copy.deepcopy(ref).double(), visual, audio, target)
    largest = max(np.linalg.norm(g) for g in g64.values())
    nonzero = [k for k, g in g64.items() if np.linalg.norm(g) > 1e-9 * largest]
    noise = 0.0
    for backend in (True, False):
        with torch.backends.mkldnn.flags(enabled=backend):
            g32 = _torch_gradients(copy.deepcopy(ref), visual, audio, target)
        noise = max([noise] + [rel_l2(g32[k], g64[k]) for k in nonzero])
    for k in nonzero:
        assert rel_l2(grads[k].numpy(), g64[k]) <= 2 * noise, k
    assert "av_fc.weight" in nonzero and "sa_net.fc.weight" in nonzero and len(nonzero) > 80
    assert np.linalg.norm(grads["fc.weight"].numpy()) == 0  # unused, as in the release


def _torch_gradients(model, visual, audio, target):
    model.train()
    model.zero_grad()
    logits, *_ = model(torch.from_numpy(visual), torch.from_numpy(audio))
    torch.nn.functional.cross_entropy(logits, torch.from_numpy(target)).backward()
    return {k: (p.grad.double().numpy() if p.grad is not None else np.zeros(tuple(p.shape)))
            for k, p in model.named_parameters() if p.requires_grad}


def _opt(loss_func, n_classes=8, dataset="ve8"):
    from opts import parse_opts
    return parse_opts(["--loss_func", loss_func, "--n_classes", str(n_classes),
                       "--dataset", dataset])


def test_state_dict_keys_and_shapes_equal_the_release_layout():
    port = VAANet(snippet_duration=8, sample_size=64, seq_len=2, resnet_depth=10)
    ref = TorchVAANet(snippet_duration=8, sample_size=64, seq_len=2, resnet_depth=10)
    ours = {k: tuple(v.shape) for k, v in port.state_dict().items()}
    theirs = {k: tuple(v.shape) if v.ndim else (1,) for k, v in ref.state_dict().items()}
    assert ours == theirs


def test_backbone_frozen_rest_trainable_in_both_modes():
    model = VAANet(snippet_duration=8, sample_size=64, seq_len=2, resnet_depth=10)
    for mode in (model.eval, model.train):
        mode()
        for k, v in model.state_dict().items():
            buffer = "running_" in k or "num_batches" in k
            assert v.requires_grad == (not k.startswith("resnet.") and not buffer), k
    assert model.ta_net.fc.bias.numpy().tolist() == [1.0, 1.0]


def test_uint8_and_float32_visual_give_the_same_output():
    model = VAANet(snippet_duration=8, sample_size=64, seq_len=2, resnet_depth=10).eval()
    visual, audio = _inputs(1, 2, 8, 64, seed=3)
    a = model(jt.array(visual), jt.array(audio))[0].numpy()
    b = model(jt.array(visual.astype(np.float32)), jt.array(audio))[0].numpy()
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dataset,positive", [("ve8", (1, 4, 6, 7)), ("ek6", (3, 5))])
def test_pcce_matches_reference_and_weights_polarity_errors(dataset, positive):
    n = 8 if dataset == "ve8" else 6
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((16, n)).astype(np.float32) * 3
    target = rng.integers(0, n, 16)
    ours = get_loss(_opt("pcce_ve8", n, dataset))(jt.array(logits), jt.array(target)).item()
    theirs = pcce_loss(torch.from_numpy(logits), torch.from_numpy(target), positive).item()
    assert ours == pytest.approx(theirs, rel=1e-6)
    ce = get_loss(_opt("ce", n, dataset))(jt.array(logits), jt.array(target)).item()
    ref_ce = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(target))
    assert ce == pytest.approx(ref_ce.item(), rel=1e-6)
    assert polarity_mask(dataset, n).nonzero()[0].tolist() == list(positive)
    # one sample, predicted class 0 (negative): weight 1.5 for a positive target, 1 otherwise
    one = np.zeros((1, n), dtype=np.float32)
    one[0, 0] = 5.0
    pcce = get_loss(_opt("pcce_ve8", n, dataset))
    ce1 = get_loss(_opt("ce", n, dataset))(jt.array(one), jt.array([positive[0]])).item()
    assert pcce(jt.array(one), jt.array([positive[0]])).item() == pytest.approx(1.5 * ce1, rel=1e-6)


def test_pcce_takes_the_polarity_the_options_carry():
    """main.py puts the annotation's classes on the options; PCCE follows them, and refuses
    classes whose polarity is not known."""
    import opts
    o = _opt("pcce_ve8", 3)
    with pytest.raises(ValueError, match="--loss_func ce"):
        get_loss(o)
    from datasets.catalog import Classes
    opts.set_classes(o, Classes(("a", "b", "c"), positive=("c",)))
    logits = np.array([[0.0, 0.0, 4.0], [4.0, 0.0, 0.0]], np.float32)  # predicts c, a
    target = np.array([0, 0])
    ce = get_loss(_opt("ce", 3))(jt.array(logits[:1]), jt.array(target[:1])).item()
    # sample 0: predicted c (positive) for a (negative): weight 1.5; sample 1 is right
    ce_right = get_loss(_opt("ce", 3))(jt.array(logits[1:]), jt.array(target[1:])).item()
    got = get_loss(o)(jt.array(logits), jt.array(target)).item()
    assert got == pytest.approx((1.5 * ce + ce_right) / 2, rel=1e-6)


def test_adam_follows_pytorch_for_several_steps():
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((5, 3)).astype(np.float32)
    xs = [rng.standard_normal((4, 3)).astype(np.float32) for _ in range(5)]
    wt = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    topt = torch.optim.Adam([wt], lr=1e-2, weight_decay=1e-3)
    wj = jt.array(w0.copy())
    jopt = Adam([wj], lr=1e-2, weight_decay=1e-3)
    for x in xs:
        topt.zero_grad()
        (torch.from_numpy(x) @ wt.T).pow(2).mean().backward()
        topt.step()
        jopt.step((jt.array(x) @ wj.transpose(1, 0)).sqr().mean())
    np.testing.assert_allclose(wj.numpy(), wt.detach().numpy(), rtol=1e-5, atol=1e-6)
    # the state round-trips in PyTorch's layout
    state = jopt.state_dict()
    assert state["state"][0]["step"] == 5.0
    np.testing.assert_allclose(state["state"][0]["exp_avg"],
                               topt.state_dict()["state"][0]["exp_avg"].numpy(), rtol=1e-5)
    fresh = Adam([jt.array(w0.copy())], lr=1e-2, weight_decay=1e-3)
    fresh.load_state_dict(topt.state_dict() | {"state": {0: {
        k: (v.numpy() if torch.is_tensor(v) else v) for k, v in topt.state_dict()["state"][0].items()}}})
    assert fresh.steps == [5]
    for mine, theirs in ((fresh.exp_avg[0], "exp_avg"), (fresh.exp_avg_sq[0], "exp_avg_sq")):
        np.testing.assert_array_equal(mine.numpy(), topt.state_dict()["state"][0][theirs].numpy())


def test_outputs_are_the_forward_and_the_audio_attention_weighs_the_audio_vector():
    """VAANet.outputs: the forward's logits and attention maps, the fused vector that
    av_fc classifies (the two streams' outputs side by side) and the audio attention, with
    which the audio embeddings of the 16 segments average to the audio vector fA."""
    model = VAANet(snippet_duration=8, sample_size=64, seq_len=2, resnet_depth=10).eval()
    visual, audio = _inputs(2, 2, 8, 64, seed=5)
    v, a = jt.array(visual), jt.array(audio)
    with jt.no_grad():
        logits, alpha, beta, gamma = (x.numpy() for x in model(v, a))
        out = model.outputs(v, a)
        through = model.av_fc(out.fused).numpy()
        fused = out.fused.numpy()
        fsct = model.visual_stream(v)[0].numpy()
        fa, aa = (x.numpy() for x in model.audio_stream(a))
        # the audio embeddings per segment, as audio_stream makes them: [B, 256, 16]
        seg = audio.reshape(2, 16, 256, 32).transpose(1, 0, 2, 3).reshape(32, 256, 32, 1)
        emb = model.a_fc(model.a_resnet(jt.array(seg)).reshape(32, -1)).numpy()
    emb = emb.reshape(16, 2, 256).transpose(1, 2, 0)
    assert fused.shape == (2, 512 + 256)
    np.testing.assert_array_equal(out.logits.numpy(), logits)
    np.testing.assert_array_equal(through, logits)
    for mine, forward in ((out.alpha, alpha), (out.beta, beta), (out.gamma, gamma)):
        np.testing.assert_array_equal(mine.numpy(), forward)
    np.testing.assert_array_equal(fused[:, :512], fsct)
    np.testing.assert_array_equal(fused[:, 512:], fa)
    assert out.audio_attention.shape == [2, 16]
    np.testing.assert_array_equal(out.audio_attention.numpy(), aa)
    assert (aa >= 0).all() and aa.std() > 0  # relu of learned scores, not a constant
    np.testing.assert_allclose((emb * aa[:, None, :]).mean(2), fa, rtol=1e-4, atol=1e-5)
    w, b = model.av_fc.weight.numpy(), model.av_fc.bias.numpy()
    np.testing.assert_allclose(fused @ w.T + b, logits, rtol=1e-4, atol=1e-5)
    swapped = np.concatenate([fused[:, 256:], fused[:, :256]], axis=1)  # positive control
    assert np.abs(swapped @ w.T + b - logits).max() > 1e-3
