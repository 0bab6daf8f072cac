"""Train a CLIP-format BPE tokenizer on generated text with the `tokenizers` library.

The result follows the byte-level BPE of CLIP (Radford et al., "Learning Transferable Visual Models From Natural
Language Supervision", ICML 2021) as `transformers.CLIPTokenizer` builds it: NFC + whitespace-collapse + lowercase
normaliser, CLIP's split rule (contractions, letter runs, single digits, punctuation runs), byte-level encoding,
word-final pieces marked with `</w>`, and `<|startoftext|>` / `<|endoftext|>` around every sequence. The vocabulary is
laid out like CLIP's: the 256 byte symbols, the same symbols with `</w>`, one token per merge in merge order, then the
two special tokens (so the end-of-text token has the highest id, as in OpenAI's checkpoints). Saved with
`save_pretrained`, the folder holds `vocab.json`, `merges.txt` and `tokenizer.json`, which `CLIPTokenizer`,
`CLIPTokenizerFast` and `AutoTokenizer`/`AutoProcessor` load.
"""

from __future__ import annotations

import json
from typing import Iterable

from ...errors import ConfigError

START_OF_TEXT = "<|startoftext|>"
END_OF_TEXT = "<|endoftext|>"
END_OF_WORD = "</w>"
# CLIP's pre-tokenisation rule (as in transformers' CLIPTokenizer): special tokens, English contractions, runs of
# letters, single digits, runs of other non-space characters
CLIP_SPLIT_PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
# the 256 byte symbols plus their word-final variants plus the two special tokens
MIN_VOCAB_SIZE = 2 * 256 + 2


def _byte_symbols() -> list[str]:
    from tokenizers import pre_tokenizers

    # ByteLevel's alphabet, in the order GPT-2 and CLIP give their first 256 ids
    alphabet = set(pre_tokenizers.ByteLevel.alphabet())
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    # GPT-2/CLIP order: the printable bytes first (as themselves), then the others shifted past 255
    others = [b for b in range(256) if b not in printable]
    symbols = [chr(b) for b in printable] + [chr(256 + n) for n in range(len(others))]
    if set(symbols) != alphabet:  # pragma: no cover - guards against a change of the byte-level alphabet
        raise RuntimeError("the byte-level alphabet of `tokenizers` differs from CLIP's byte mapping")
    return symbols


def _training_tokenizer():
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

    tokenizer = Tokenizer(models.BPE(continuing_subword_prefix="", end_of_word_suffix=END_OF_WORD))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CLIP_SPLIT_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    return tokenizer


def learn_clip_merges(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> list[tuple[str, str]]:
    """Learn byte-level BPE merges (with `</w>` word ends) on `texts` under CLIP's normaliser and split rule.

    Args:
        texts (`Iterable[str]`): training text.
        vocab_size (`int`): size of the final vocabulary, bytes and special tokens included (at least 514).
        min_frequency (`int`): a pair seen fewer times is never merged.
    """
    from tokenizers import pre_tokenizers, trainers

    if vocab_size < MIN_VOCAB_SIZE:
        raise ConfigError(f"vocab_size is {vocab_size}",
                          f"use at least {MIN_VOCAB_SIZE} (bytes, word-final bytes, 2 specials)")
    tokenizer = _training_tokenizer()
    trainer = trainers.BpeTrainer(
        # the trainer counts its alphabet (including `</w>` variants it sees) in vocab_size; leave room so that the
        # number of merges can reach vocab_size - MIN_VOCAB_SIZE in CLIP's layout
        vocab_size=vocab_size + 256,
        min_frequency=min_frequency,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        continuing_subword_prefix="",
        end_of_word_suffix=END_OF_WORD,
        special_tokens=[],
    )
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    merges = json.loads(tokenizer.to_str())["model"]["merges"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]
    if not merges:
        raise ConfigError("No BPE merge was learned from the training text", "pass more (or more repetitive) text")
    return merges[: vocab_size - MIN_VOCAB_SIZE]


def clip_vocabulary(merges: list[tuple[str, str]]) -> dict[str, int]:
    """CLIP's vocabulary layout: bytes, word-final bytes, one token per merge, start and end of text."""
    symbols = _byte_symbols()
    tokens = symbols + [s + END_OF_WORD for s in symbols]
    seen = set(tokens)
    for left, right in merges:
        merged = left + right
        if merged in seen:
            raise ConfigError(f"Merge {left!r} + {right!r} repeats token {merged!r}", "learn the merges again")
        tokens.append(merged)
        seen.add(merged)
    tokens += [START_OF_TEXT, END_OF_TEXT]
    return {token: index for index, token in enumerate(tokens)}


def train_clip_tokenizer(texts: Iterable[str], vocab_size: int = 1024, min_frequency: int = 2,
                         model_max_length: int = 77):
    """Train a `transformers.CLIPTokenizer` on `texts` (see the module docstring for the format).

    Args:
        texts (`Iterable[str]`): training text (e.g. `CaptionWorld.vocabulary_texts()`).
        vocab_size (`int`): vocabulary size including bytes and the two special tokens.
        min_frequency (`int`): minimum pair count for a merge.
        model_max_length (`int`): longest sequence the text model takes (its `max_position_embeddings`).
    """
    from transformers import CLIPTokenizer

    merges = learn_clip_merges(texts, vocab_size, min_frequency)
    vocab = clip_vocabulary(merges)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[tuple(m) for m in merges], model_max_length=model_max_length)
    check_clip_tokenizer(tokenizer)
    return tokenizer


def check_clip_tokenizer(tokenizer) -> None:
    """Raise `ConfigError` unless `tokenizer` wraps sequences in start/end-of-text and pads with end-of-text."""
    if tokenizer.bos_token != START_OF_TEXT or tokenizer.eos_token != END_OF_TEXT:
        raise ConfigError(
            f"Tokenizer special tokens are bos={tokenizer.bos_token!r}, eos={tokenizer.eos_token!r}",
            f"use {START_OF_TEXT!r} and {END_OF_TEXT!r} as in CLIP",
        )
    ids = tokenizer("a")["input_ids"]
    if ids[0] != tokenizer.bos_token_id or ids[-1] != tokenizer.eos_token_id:
        raise ConfigError("Tokenizer does not wrap text in start/end-of-text tokens", "build it with CLIPTokenizer")


__all__ = [
    "START_OF_TEXT",
    "END_OF_TEXT",
    "END_OF_WORD",
    "CLIP_SPLIT_PATTERN",
    "learn_clip_merges",
    "clip_vocabulary",
    "train_clip_tokenizer",
    "check_clip_tokenizer",
]
