"""Loss pieces against hand computation, and the answer mask pinned (docs/methods.md)."""

import math

import pytest
import torch

from unlearnkit.losses import answer_logprob, answer_nll, hidden_mse, token_js, token_kl

IGN = -100


def batch():
    """Two sequences of length 5 over a vocabulary of 4; answers are positions 2-3 and 3-4 (padding after)."""
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 4)
    labels = torch.tensor([[IGN, IGN, 1, 3, IGN], [IGN, IGN, IGN, 0, 2]])
    return logits, labels


def by_hand_nll(logits, labels, row):
    terms = []
    for t in range(1, labels.shape[1]):
        if labels[row, t] != IGN:
            logp = torch.log_softmax(logits[row, t - 1], -1)
            terms.append(-float(logp[labels[row, t]]))
    return sum(terms) / len(terms), -sum(terms)


def test_answer_nll_and_logprob_match_hand_computation():
    logits, labels = batch()
    nll, logprob = answer_nll(logits, labels), answer_logprob(logits, labels)
    for row in range(2):
        mean_nll, summed_logp = by_hand_nll(logits, labels, row)
        assert nll[row].item() == pytest.approx(mean_nll, rel=1e-5)
        assert logprob[row].item() == pytest.approx(summed_logp, rel=1e-5)


def test_loss_sees_answer_tokens_only():
    logits, labels = batch()
    base = answer_nll(logits, labels)
    prompt_changed = logits.clone()
    prompt_changed[0, 0] += 5.0  # position 0 predicts token 1, a prompt token
    prompt_changed[1, 0:2] -= 3.0
    assert torch.allclose(answer_nll(prompt_changed, labels), base)
    pad_changed = logits.clone()
    pad_changed[0, 3:] += 7.0  # position 3 predicts padding, position 4 predicts nothing
    assert torch.allclose(answer_nll(pad_changed, labels)[0], base[0])
    answer_changed = logits.clone()
    answer_changed[0, 1, 1] += 2.0  # position 1 predicts the first answer token
    assert not torch.allclose(answer_nll(answer_changed, labels)[0], base[0])
    other_answer = labels.clone()
    other_answer[1, 4] = 1
    assert not torch.allclose(answer_nll(logits, other_answer)[1], base[1])


def test_token_kl_and_js_match_hand_computation_and_mask_padding():
    logits, labels = batch()
    ref = logits + torch.randn_like(logits)
    kl, js = token_kl(ref, logits, labels), token_js(ref, logits, labels)
    for row in range(2):
        kls, jss = [], []
        for t in range(1, 5):
            if labels[row, t] == IGN:
                continue
            p, q = torch.softmax(ref[row, t - 1], -1), torch.softmax(logits[row, t - 1], -1)
            m = (p + q) / 2
            kls.append(float((p * (p / q).log()).sum()))
            jss.append(float(0.5 * (p * (p / m).log()).sum() + 0.5 * (q * (q / m).log()).sum()))
        assert kl[row].item() == pytest.approx(sum(kls) / len(kls), rel=1e-5)
        assert js[row].item() == pytest.approx(sum(jss) / len(jss), rel=1e-5)
    assert torch.all(js <= math.log(2) + 1e-6) and torch.all(js >= 0)
    shifted = logits.clone()
    shifted[0, 4] += 9.0  # a padding position
    assert torch.allclose(token_kl(ref, shifted, labels), kl)
    assert torch.allclose(token_kl(logits, logits, labels), torch.zeros(2), atol=1e-6)


def test_hidden_mse_ignores_padding():
    h, target = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    out = hidden_mse(h, target, mask)
    assert out[0].item() == pytest.approx(((h[0, :2] - target[0, :2]) ** 2).mean().item(), rel=1e-5)
    h2 = h.clone()
    h2[0, 2] += 100
    assert torch.allclose(hidden_mse(h2, target, mask), out)
