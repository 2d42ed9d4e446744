"""Plain task-vector negation (Ilharco et al. 2023): fine-tune on the harmful answers, then negate."""

from unlearnkit.methods.registry import register
from unlearnkit.methods.sku import SKUTrainer


@register("ft-negate")
class FTNegateTrainer(SKUTrainer):
    description = "Task-vector negation: fine-tune on harmful answers only, then subtract the delta"
    paper = "Ilharco et al. 2023, arXiv 2212.04089"
    needs_reference = False
    mismatch_pool = None
    uses_retain = False

    def loss_weights(self):
        return self.args.sku_gd_weight, 0.0, 0.0
