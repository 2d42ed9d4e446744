"""Turn prompt/response pairs into token ids with an answer-only label mask, and batch them.

The answer mask is the part the public reference code gets wrong (see docs/methods.md): we tokenize the
prompt text and the answer text separately and concatenate the ids, so the boundary is exact — the
first answer token is always in the loss and no prompt token ever is.
"""

from __future__ import annotations

import random

import torch

from unlearnkit.errors import UnlearnkitError

IGNORE = -100
PLAIN_PROMPT = "### Question: {prompt}\n### Answer:"


def prompt_text(tokenizer, prompt: str, system: str | None = None) -> str:
    """What the model sees before it answers: the chat template, or the plain Q/A format.
    `system` None keeps the template's own default (SmolLM2's inserts a 21-token system prompt);
    a string is sent as the system message, "" being an empty one."""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": prompt}]
        if system is not None:
            messages.insert(0, {"role": "system", "content": system})
        from jinja2 import TemplateError

        try:
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except TemplateError as err:
            raise UnlearnkitError(f"this model's chat template refuses a system message ({err}): "
                                  "leave system_prompt unset") from None
    plain = PLAIN_PROMPT.format(prompt=prompt)
    return f"{system}\n{plain}" if system else plain


def answer_text(tokenizer, response: str) -> str:
    """The text that follows prompt_text for this response, end-of-turn marker included."""
    eos = tokenizer.eos_token or ""
    if getattr(tokenizer, "chat_template", None):
        probe = "x"
        head = prompt_text(tokenizer, probe)
        full = tokenizer.apply_chat_template(
            [{"role": "user", "content": probe}, {"role": "assistant", "content": response}], tokenize=False
        )
        if full.startswith(head):
            return full[len(head):]
        return response + eos
    return " " + response + eos


def prompt_ids(tokenizer, prompt: str, system: str | None = None) -> list[int]:
    """The token ids of prompt_text: what the model reads before it answers."""
    # Chat templates write their own BOS into the text; the plain format relies on the tokenizer's.
    add_special = not getattr(tokenizer, "chat_template", None)
    return tokenizer(prompt_text(tokenizer, prompt, system), add_special_tokens=add_special)["input_ids"]


def _answer_ids(tokenizer, response: str) -> list[int]:
    return tokenizer(answer_text(tokenizer, response), add_special_tokens=False)["input_ids"]


def join(prompt_ids: list[int], answer_ids: list[int], max_length: int) -> dict:
    """Concatenate with labels on the answer only; keep the prompt's end and the answer's start."""
    prompt_ids = prompt_ids[-(max_length * 3 // 4):]
    answer_ids = answer_ids[: max(1, max_length - len(prompt_ids))]
    return {"input_ids": prompt_ids + answer_ids, "labels": [IGNORE] * len(prompt_ids) + answer_ids}


def encode_pair(tokenizer, prompt: str, response: str, max_length: int = 256, system: str | None = None) -> dict:
    return join(prompt_ids(tokenizer, prompt, system), _answer_ids(tokenizer, response), max_length)


class UnlearnDataset(torch.utils.data.Dataset):
    """Item i holds one example of each group a method reads:

    - `forget`: (x_f, y_f);  `retain`: (x_n, y_n);
    - `mismatch`: x_f with K answers drawn from `mismatch_pool` ("forget": other harmful answers,
      SKU's random disassociation; "retain": normal answers, Yao et al.'s random mismatch);
    - `positive`: x_f with a desirable answer (a refusal for refusal-DPO, the cluster target for EMU).

    Draws are seeded by (seed, i), so a resumed run sees exactly the batches it would have seen.
    """

    def __init__(self, tokenizer, forget: list[dict], retain: list[dict] | None = None, *, max_length: int = 256,
                 mismatch_pool: str | None = None, mismatch_k: int = 0, positive: list[str] | None = None,
                 seed: int = 0, system_prompt: str | None = None):
        if not forget:
            raise ValueError("the forget set is empty")
        self.max_length = max_length
        self.seed = seed
        self.mismatch_k = mismatch_k if mismatch_pool else 0
        self.forget_prompts = [prompt_ids(tokenizer, p["prompt"], system_prompt) for p in forget]
        self.forget_answers = [_answer_ids(tokenizer, p["response"]) for p in forget]
        self.retain = [encode_pair(tokenizer, p["prompt"], p["response"], max_length, system_prompt) for p in retain or []]
        self.positive = [_answer_ids(tokenizer, text) for text in positive] if positive else None
        if mismatch_pool == "forget":
            self.pool = self.forget_answers
        elif mismatch_pool == "retain":
            self.pool = [_answer_ids(tokenizer, p["response"]) for p in retain or []]
        else:
            self.pool = []
        if self.mismatch_k and len(self.pool) < 2:
            raise ValueError(f"random mismatch needs at least 2 answers in the {mismatch_pool} set")

    def __len__(self) -> int:
        return max(len(self.forget_prompts), len(self.retain))

    def __getitem__(self, i: int) -> dict:
        f = i % len(self.forget_prompts)
        prompt = self.forget_prompts[f]
        item = {"forget": [join(prompt, self.forget_answers[f], self.max_length)]}
        if self.retain:
            item["retain"] = [self.retain[i % len(self.retain)]]
        if self.mismatch_k:
            rng = random.Random(self.seed * 1_000_003 + i)
            others = [j for j in range(len(self.pool)) if self.pool is not self.forget_answers or j != f]
            picks = [rng.choice(others) for _ in range(self.mismatch_k)]
            item["mismatch"] = [join(prompt, self.pool[j], self.max_length) for j in picks]
        if self.positive:
            item["positive"] = [join(prompt, self.positive[f % len(self.positive)], self.max_length)]
        return item


class GroupCollator:
    """Pads every group of a batch to one common length (right padding) so that a loss can run all
    groups through the model in a single forward pass and split the logits afterwards."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, items: list[dict]) -> dict:
        groups = {name: [seq for item in items for seq in item[name]] for name in items[0]}
        length = max(len(seq["input_ids"]) for seqs in groups.values() for seq in seqs)
        batch = {}
        for name, seqs in groups.items():
            ids = torch.full((len(seqs), length), self.pad_token_id, dtype=torch.long)
            labels = torch.full((len(seqs), length), IGNORE, dtype=torch.long)
            mask = torch.zeros((len(seqs), length), dtype=torch.long)
            for row, seq in enumerate(seqs):
                n = len(seq["input_ids"])
                ids[row, :n] = torch.tensor(seq["input_ids"])
                labels[row, :n] = torch.tensor(seq["labels"])
                mask[row, :n] = 1
            batch[f"{name}_input_ids"], batch[f"{name}_labels"], batch[f"{name}_attention_mask"] = ids, labels, mask
        return batch
