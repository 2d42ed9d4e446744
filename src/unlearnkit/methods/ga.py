"""Gradient ascent on the harmful answers."""

from unlearnkit.methods.base import UnlearnTrainer
from unlearnkit.losses import answer_nll
from unlearnkit.methods.registry import register


@register("ga")
class GATrainer(UnlearnTrainer):
    description = "Gradient ascent: maximise the NLL of the harmful answers"
    paper = "Jang et al. 2023, arXiv 2210.01504"
    uses_retain = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        out = self.forward_groups(model, inputs, ["forget"])["forget"]
        nll = answer_nll(out.logits, out.labels).mean()
        if nll.item() > self.args.ga_stop_nll:  # llm_unlearn's stop rule: past this the model is broken anyway
            self.control.should_training_stop = True
        self.record(forget_nll=nll)
        return -nll
