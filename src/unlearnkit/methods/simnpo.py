"""SimNPO (Fan et al. 2024): reference-free, length-normalised NPO."""

import torch.nn.functional as F

from unlearnkit.methods.base import UnlearnTrainer
from unlearnkit.losses import answer_nll
from unlearnkit.methods.registry import register


@register("simnpo")
class SimNPOTrainer(UnlearnTrainer):
    description = "SimNPO: NPO without a reference model, on the mean-token NLL, + NLL on normal data"
    paper = "Fan et al. 2024, arXiv 2410.07163"

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        a = self.args
        out = self.forward_groups(model, inputs, ["forget", "retain"])
        forget_nll = answer_nll(out["forget"].logits, out["forget"].labels)
        simnpo = (-2.0 / a.simnpo_beta * F.logsigmoid(a.simnpo_beta * (forget_nll - a.simnpo_delta))).mean()
        retain = answer_nll(out["retain"].logits, out["retain"].labels).mean()
        self.record(simnpo=simnpo, forget_nll=forget_nll.mean(), retain_nll=retain)
        return simnpo + a.retain_weight * retain
