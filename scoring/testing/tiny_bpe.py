"""A byte-level BPE tokenizer in Qwen2's format, learnt from a given text, for tiny test models.

``learn_bpe`` is a plain BPE (no tokenizers-library trainer, so the merges are the same in
any environment) over Qwen2's pre-tokenizer split of the text, on GPT-2's byte alphabet;
``qwen2_tokenizer_files`` lays it out as the Qwen2 family's hub repos hold their tokenizer:
``tokenizer.json`` (NFC, the split regex, byte-level), ``tokenizer_config.json``
(``Qwen2Tokenizer``, the 14 special tokens, eos ``<|im_end|>``, pad ``<|endoftext|>``)
and ``vocab.json`` (the caller writes ``merges.txt``). transformers 4.45, 4.49 and 5.x
load it to the same ids.
"""

from __future__ import annotations

import itertools
from collections import Counter

# Qwen2's added tokens, in their order (ids follow the BPE vocabulary, as 151643.. do).
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>",
    "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>",
    "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]  # fmt: skip
# Qwen2's pre-tokenizer split (tokenizer.json of the Qwen2 family).
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map (the byte-level alphabet of Qwen2's BPE)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    codes = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes), strict=True))


def learn_bpe(text: str, n_merges: int) -> tuple[dict[str, int], list[str]]:
    """(vocabulary, merges) of a byte-level BPE learnt on ``text``: the 256 byte symbols,
    then one token per merge; ties go to the lexicographically smallest pair."""
    import regex

    table = bytes_to_unicode()
    words = Counter(
        tuple(table[b] for b in piece.encode("utf-8"))
        for piece in regex.findall(QWEN2_PATTERN, text)
    )
    vocab = {ch: i for i, ch in enumerate(table.values())}
    merges: list[str] = []
    for _ in range(n_merges):
        pairs: Counter = Counter()
        for word, count in words.items():
            for pair in itertools.pairwise(word):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merged = best[0] + best[1]
        merges.append(f"{best[0]} {best[1]}")
        vocab.setdefault(merged, len(vocab))
        new_words: Counter = Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(merged)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new_words[tuple(out)] += count
        words = new_words
    return vocab, merges


def qwen2_tokenizer_files(
    vocab: dict[str, int], merges: list[str], chat_template: str
) -> dict[str, dict]:
    """tokenizer.json, tokenizer_config.json and vocab.json of a Qwen2-style byte-level BPE
    tokenizer with this vocabulary and these merges; the special tokens follow the
    vocabulary, in Qwen2's order (as 151643.. follow Qwen2's 151643 BPE tokens)."""
    vocab = dict(vocab)
    first = len(vocab)
    specials = {tok: first + i for i, tok in enumerate(SPECIAL_TOKENS)}
    byte_level = {"add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    added = [
        {
            "id": i,
            "content": tok,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for tok, i in specials.items()
    ]
    tokenizer_json = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": {"Regex": QWEN2_PATTERN},
                    "behavior": "Isolated",
                    "invert": False,
                },
                {"type": "ByteLevel", **byte_level},
            ],
        },
        "post_processor": {"type": "ByteLevel", **byte_level},
        "decoder": {"type": "ByteLevel", **byte_level},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": merges,
        },
    }
    config = {
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(i): {k: v for k, v in a.items() if k not in ("id",)}
            for a in added
            for i in [a["id"]]
        },
        "additional_special_tokens": SPECIAL_TOKENS[1:],
        "bos_token": None,
        "chat_template": chat_template,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 32768,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
    return {"tokenizer.json": tokenizer_json, "tokenizer_config.json": config, "vocab": vocab}
