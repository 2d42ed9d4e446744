"""Yao et al. 2023, "Large Language Model Unlearning": GA + random mismatch + KL on normal data."""

from unlearnkit.methods.base import UnlearnTrainer
from unlearnkit.losses import answer_nll, token_kl
from unlearnkit.methods.registry import register


@register("llmu")
class LLMUTrainer(UnlearnTrainer):
    description = "GA on harmful answers + harmful prompts → random normal answers + KL to θ₀ on normal data"
    paper = "Yao et al. 2023, arXiv 2310.10683"
    needs_reference = True
    mismatch_pool = "retain"

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        a = self.args
        out = self.forward_groups(model, inputs, ["forget", "mismatch", "retain"])
        ref = self.reference_forward(model, inputs, ["retain"])["retain"]
        forget_nll = answer_nll(out["forget"].logits, out["forget"].labels).mean()
        mismatch = answer_nll(out["mismatch"].logits, out["mismatch"].labels).mean()
        kl = token_kl(ref.logits, out["retain"].logits, out["retain"].labels).mean()
        self.record(forget_nll=forget_nll, mismatch=mismatch, kl=kl)
        return -a.llmu_ga_weight * forget_nll + a.llmu_mismatch_weight * mismatch + a.llmu_kl_weight * kl
