"""Token-level formatting: exact answer boundary, chat template and the plain fallback."""

from unlearnkit.data.format import IGNORE, GroupCollator, UnlearnDataset, encode_pair, prompt_text


def answer_tokens(tokenizer, enc):
    return tokenizer.decode([t for t, l in zip(enc["input_ids"], enc["labels"]) if l != IGNORE])


def test_chat_answer_mask_starts_at_first_answer_token(tokenizer):
    enc = encode_pair(tokenizer, "What is 2+2?", "Four.")
    assert answer_tokens(tokenizer, enc).startswith("Four.")
    assert "What is 2+2?" in tokenizer.decode(enc["input_ids"])
    prompt_len = sum(1 for l in enc["labels"] if l == IGNORE)
    assert tokenizer.decode(enc["input_ids"][:prompt_len]) == prompt_text(tokenizer, "What is 2+2?")


def test_plain_format_keeps_first_answer_token(tokenizer):
    plain = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    plain.chat_template = None
    enc = encode_pair(plain, "Capital of France?", "Paris")
    assert "### Question: Capital of France?\n### Answer:" in plain.decode(enc["input_ids"])
    assert answer_tokens(plain, enc).strip().startswith("Paris")  # the " Paris" token is in the loss


def test_truncation_keeps_some_answer(tokenizer):
    enc = encode_pair(tokenizer, "word " * 400, "the answer", max_length=32)
    assert len(enc["input_ids"]) <= 32
    assert any(l != IGNORE for l in enc["labels"])


def test_dataset_groups_and_collator(tokenizer, pairs):
    forget, retain = pairs
    ds = UnlearnDataset(tokenizer, forget, retain, mismatch_pool="forget", mismatch_k=3, positive=["No."], seed=1)
    item = ds[0]
    assert set(item) == {"forget", "retain", "mismatch", "positive"}
    assert len(item["mismatch"]) == 3
    own = tokenizer.decode([t for t, l in zip(item["forget"][0]["input_ids"], item["forget"][0]["labels"]) if l != IGNORE])
    for seq in item["mismatch"]:  # never the prompt's own answer
        assert tokenizer.decode([t for t, l in zip(seq["input_ids"], seq["labels"]) if l != IGNORE]) != own
    assert ds[0] == ds[0]  # seeded draws: a resumed run sees the same batches
    batch = GroupCollator(tokenizer.pad_token_id)([ds[0], ds[1]])
    widths = {v.shape[1] for v in batch.values()}
    assert len(widths) == 1 and batch["mismatch_input_ids"].shape[0] == 6
    assert (batch["forget_labels"][batch["forget_attention_mask"] == 0] == IGNORE).all()
