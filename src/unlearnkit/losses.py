"""The loss pieces every method is built from, each written once.

All reductions are over *answer tokens only*: a position counts when its label is not -100, so
prompt and padding never enter a loss. Functions return one value per sequence ([B]); methods
average over the batch, so each example weighs the same whatever its length.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from unlearnkit.data.format import IGNORE


def _shift(logits: torch.Tensor, labels: torch.Tensor):
    """Position t predicts token t+1; returns (logits[:, :-1], labels[:, 1:], mask)."""
    logits, labels = logits[:, :-1, :], labels[:, 1:]
    mask = labels != IGNORE
    return logits, labels, mask


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum(-1) / mask.sum(-1).clamp(min=1)


def _token_logprob(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(y_t | y_<t) at every position [B, T-1], and the answer mask.
    log_softmax over the last (contiguous) dimension: cross_entropy wants the vocabulary in dimension
    1, and transposing [B, T, V] for it costs a copy and a slow strided softmax over 49k entries."""
    logits, labels, mask = _shift(logits, labels)
    logp = F.log_softmax(logits.float(), -1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return logp, mask


def answer_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed log-probability of each sequence's answer tokens, [B]."""
    token_logp, mask = _token_logprob(logits, labels)
    return (token_logp * mask).sum(-1)


def answer_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """ℓ(y|x): mean token negative log-likelihood of each sequence's answer, [B]."""
    token_logp, mask = _token_logprob(logits, labels)
    return _masked_mean(-token_logp, mask)


def token_kl(ref_logits: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """KL_t(p_ref ‖ p_θ) averaged over answer tokens, [B]."""
    ref_logits, _, mask = _shift(ref_logits, labels)
    logits = logits[:, :-1, :]
    ref_logp = F.log_softmax(ref_logits.float(), -1)
    logp = F.log_softmax(logits.float(), -1)
    kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
    return _masked_mean(kl, mask)


def token_js(ref_logits: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Jensen–Shannon divergence between next-token distributions, averaged over answer tokens, [B].
    Bounded in [0, ln 2], which is what makes EMU's distance loss safe to maximise."""
    ref_logits, _, mask = _shift(ref_logits, labels)
    logits = logits[:, :-1, :]
    ref_logp = F.log_softmax(ref_logits.float(), -1)
    logp = F.log_softmax(logits.float(), -1)
    mix_logp = torch.logsumexp(torch.stack([ref_logp, logp]), 0) - math.log(2)
    js = 0.5 * (ref_logp.exp() * (ref_logp - mix_logp)).sum(-1) + 0.5 * (logp.exp() * (logp - mix_logp)).sum(-1)
    return _masked_mean(js, mask)


def hidden_mse(hidden: torch.Tensor, target: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error per real (non-padding) token, averaged per sequence, [B] (RMU)."""
    per_token = ((hidden.float() - target.float()) ** 2).mean(-1)
    return _masked_mean(per_token, attention_mask.bool())
