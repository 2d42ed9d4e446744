"""Negative Preference Optimization (Zhang et al. 2024)."""

import torch.nn.functional as F

from unlearnkit.methods.base import UnlearnTrainer
from unlearnkit.losses import answer_logprob, answer_nll
from unlearnkit.methods.registry import register


@register("npo")
class NPOTrainer(UnlearnTrainer):
    description = "NPO: push the harmful answers' likelihood below θ₀'s, bounded, + NLL on normal data"
    paper = "Zhang et al. 2024, arXiv 2404.05868"
    needs_reference = True

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        beta = self.args.npo_beta
        out = self.forward_groups(model, inputs, ["forget", "retain"])
        ref = self.reference_forward(model, inputs, ["forget"])["forget"]
        log_ratio = answer_logprob(out["forget"].logits, out["forget"].labels) - answer_logprob(ref.logits, ref.labels)
        npo = (-2.0 / beta * F.logsigmoid(-beta * log_ratio)).mean()
        retain = answer_nll(out["retain"].logits, out["retain"].labels).mean()
        self.record(npo=npo, retain_nll=retain)
        return npo + self.args.retain_weight * retain
