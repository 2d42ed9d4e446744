"""DPO with a refusal as the chosen answer and the harmful answer as the rejected one."""

import torch.nn.functional as F

from unlearnkit.methods.base import UnlearnTrainer
from unlearnkit.losses import answer_logprob, answer_nll
from unlearnkit.methods.registry import register


@register("refusal-dpo")
class RefusalDPOTrainer(UnlearnTrainer):
    description = "DPO preferring a refusal over the harmful answer, + NLL on normal data"
    paper = "Rafailov et al. 2023, arXiv 2305.18290 (as used by Zhang et al. 2024 for unlearning)"
    needs_reference = True
    wants_refusals = True  # unlearn() fills the `positive` group with refusals

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        out = self.forward_groups(model, inputs, ["positive", "forget", "retain"])
        ref = self.reference_forward(model, inputs, ["positive", "forget"])

        def log_ratio(name):
            return answer_logprob(out[name].logits, out[name].labels) - answer_logprob(ref[name].logits, ref[name].labels)

        margin = log_ratio("positive") - log_ratio("forget")
        dpo = -F.logsigmoid(self.args.dpo_beta * margin).mean()
        retain = answer_nll(out["retain"].logits, out["retain"].labels).mean()
        self.record(dpo=dpo, margin=margin.mean(), retain_nll=retain)
        return dpo + self.args.retain_weight * retain
