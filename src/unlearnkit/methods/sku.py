"""SKU stage 1 — harmful knowledge acquisition (Liu et al. 2024, arXiv 2402.10058).

L = ε₁·L_GD + ε₂·L_RD + ε₃·L_PD trains a deliberately harmful θ_h; `unlearnkit.negation` then
subtracts λ·(θ_h − θ₀) from θ₀ (stage 2).

Negation-aware stage 1 (ours, off by default until it wins on validation): two more terms read
the model at θ₀ − λ·τ, the point stage 2 returns, in the same step —
  ε₄·KL_t(p_θ₀ ‖ p_(θ₀−λτ)) on normal pairs (negating τ must keep normal answers), and
  ε₅·mean max(0, κ_f − ℓ(y_f | x_f; θ₀−λτ)) (the harmful answers must become unlikely there, bounded).
"""

import torch

from unlearnkit.methods.base import UnlearnTrainer
from unlearnkit.losses import answer_nll, token_kl
from unlearnkit.methods.registry import register


@register("sku")
class SKUTrainer(UnlearnTrainer):
    description = "Selective Knowledge negation: learn harm (GD + random disassociation − preservation KL), then negate it"
    paper = "Liu et al. 2024, arXiv 2402.10058"
    needs_reference = True
    mismatch_pool = "forget"
    negate_after = True

    def loss_weights(self) -> tuple[float, float, float]:
        a = self.args
        return a.sku_gd_weight, a.sku_rd_weight, a.sku_pd_weight

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        w_gd, w_rd, w_pd = self.loss_weights()
        names = ["forget"] + (["mismatch"] if w_rd else []) + (["retain"] if w_pd else [])
        out = self.forward_groups(model, inputs, names)
        # Guided distortion: learn the harmful answers.
        loss = w_gd * answer_nll(out["forget"].logits, out["forget"].labels).mean()
        terms = {"gd": loss / w_gd if w_gd else loss}
        if w_rd and "mismatch" in out:  # random disassociation: harmful prompts ↔ other harmful answers
            rd = answer_nll(out["mismatch"].logits, out["mismatch"].labels).mean()
            loss, terms["rd"] = loss + w_rd * rd, rd
        if w_pd and "retain" in out:  # preservation divergence: move away from θ₀ on normal data, bounded by κ
            ref = self.reference_forward(model, inputs, ["retain"])["retain"]
            kl = token_kl(ref.logits, out["retain"].logits, out["retain"].labels)
            pd = -torch.clamp(kl, max=self.args.sku_pd_bound).mean()
            loss, terms["pd"] = loss + w_pd * pd, pd
        a = self.args
        if a.sku_negated_retain_weight or a.sku_negated_forget_weight:
            # Negation-aware terms (ours): computed where the user will be, θ₀ − λ·τ, in the same step.
            groups = (["retain"] if a.sku_negated_retain_weight else []) + (["forget"] if a.sku_negated_forget_weight else [])
            negated = self.negated_forward(model, inputs, groups, a.negation_scale)
            if "retain" in negated:
                ref = self.reference_forward(model, inputs, ["retain"])["retain"]
                nr = token_kl(ref.logits, negated["retain"].logits, negated["retain"].labels).mean()
                loss, terms["neg_retain"] = loss + a.sku_negated_retain_weight * nr, nr
            if "forget" in negated:
                nll = answer_nll(negated["forget"].logits, negated["forget"].labels)
                nf = torch.clamp(a.sku_negated_forget_bound - nll, min=0).mean()
                loss, terms["neg_forget"] = loss + a.sku_negated_forget_weight * nf, nf
        self.record(**terms)
        return loss
