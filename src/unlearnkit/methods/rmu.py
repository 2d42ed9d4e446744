"""Representation Misdirection for Unlearning (Li et al. 2024, WMDP)."""

import torch

from unlearnkit.methods.base import UnlearnTrainer
from unlearnkit.losses import hidden_mse
from unlearnkit.methods.registry import register


@register("rmu")
class RMUTrainer(UnlearnTrainer):
    description = "RMU: steer layer-ℓ activations on harmful text to a random direction, keep them on normal text"
    paper = "Li et al. 2024, arXiv 2403.03218"
    needs_reference = True

    @staticmethod
    def steered_layer(config, args) -> int:
        return args.rmu_layer if args.rmu_layer >= 0 else config.num_hidden_layers // 3

    @classmethod
    def trainable_modules(cls, model, args):
        # Only the MLPs of the steered layer and the two below it learn (as in the WMDP code).
        from unlearnkit.models.layers import mlp_linear_names

        layer = cls.steered_layer(model.config, args)
        return mlp_linear_names(model, range(max(0, layer - 2), layer + 1))

    def steering_target(self, reference_hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """c·u, fixed on first use: u a seeded random unit vector, c from --rmu-coeff or, by default,
        4 × θ₀'s mean activation norm at the layer (WMDP's c = 6.5 was tuned to Zephyr-7B's scale)."""
        if getattr(self, "_steer", None) is None:
            gen = torch.Generator().manual_seed(self.args.seed)
            u = torch.rand(reference_hidden.shape[-1], generator=gen)
            u = u / u.norm()
            coeff = self.args.rmu_coeff
            if coeff < 0:
                norms = reference_hidden.float().norm(dim=-1)[attention_mask.bool()]
                coeff = 4.0 * norms.mean().item()
            self._steer = (coeff * u).to(reference_hidden.device)
        return self._steer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        index = self.steered_layer(self.accelerator.unwrap_model(model).config, self.args) + 1  # [0] = embeddings
        out = self.forward_groups(model, inputs, ["forget", "retain"], output_hidden_states=True)
        ref = self.reference_forward(model, inputs, ["forget", "retain"], output_hidden_states=True)
        forget, retain = out["forget"], out["retain"]
        target = self.steering_target(ref["forget"].hidden_states[index], forget.attention_mask)
        steer = hidden_mse(forget.hidden_states[index], target.expand_as(forget.hidden_states[index]), forget.attention_mask).mean()
        keep = hidden_mse(retain.hidden_states[index], ref["retain"].hidden_states[index], retain.attention_mask).mean()
        self.record(steer=steer, keep=keep)
        return steer + self.args.retain_weight * keep
