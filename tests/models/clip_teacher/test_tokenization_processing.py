"""The CLIP-format tokenizer, the config builder (ids, positions, pooling) and the processor of the CLIP teacher."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from effhub.data.captions import CaptionWorld
from effhub.errors import ConfigError
from effhub.models.clip_teacher.configuration_clip_teacher import (
    DEFAULT_LEARNED_CONTEXTS,
    build_clip_teacher_config,
    context_prompt_length,
    required_positions,
    trained_positions,
)
from effhub.models.clip_teacher.processing import (
    build_clip_processor,
    pixel_values_from_uint8,
    save_clip_processor,
)
from effhub.models.clip_teacher.tokenization import END_OF_TEXT, START_OF_TEXT, train_clip_tokenizer


@pytest.fixture(scope="module")
def world():
    return CaptionWorld()


@pytest.fixture(scope="module")
def texts(world):
    return world.vocabulary_texts(600)


@pytest.fixture(scope="module")
def tokenizer(texts, world):
    tokenizer = train_clip_tokenizer(texts, vocab_size=700)
    tokenizer.model_max_length = required_positions(tokenizer, texts, world.class_names, min_texts=6)
    return tokenizer


def test_tokenizer_has_clip_layout(tokenizer):
    vocab = tokenizer.get_vocab()
    # bytes, word-final bytes, merges, then the two special tokens with the highest ids (as in OpenAI's CLIP)
    assert vocab["!"] == 0 and vocab["a"] == 64 and vocab["a</w>"] == 256 + 64
    assert vocab[START_OF_TEXT] == len(vocab) - 2 and vocab[END_OF_TEXT] == len(vocab) - 1
    assert tokenizer.pad_token == END_OF_TEXT
    tokens = tokenizer.tokenize("A Photo of an orange   star.")
    assert tokens == ["a</w>", "photo</w>", "of</w>", "an</w>", "orange</w>", "star</w>", ".</w>"]
    ids = tokenizer("a red circle")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id and len(ids) == 5
    # unknown words fall back to byte pieces, never to an unknown token
    assert tokenizer.decode(tokenizer("zebra 42")["input_ids"], skip_special_tokens=True) == "zebra 4 2"


def test_tokenizer_training_is_deterministic(texts, tokenizer):
    again = train_clip_tokenizer(texts, vocab_size=700)
    assert again.get_vocab() == tokenizer.get_vocab()


def test_saved_tokenizer_loads_in_every_clip_form(tokenizer, tmp_path):
    from transformers import AutoTokenizer, CLIPTokenizer, CLIPTokenizerFast

    save_clip_processor(build_clip_processor(tokenizer, 48), tmp_path)
    saved = {path.name for path in tmp_path.iterdir()}
    assert {"vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json"} <= saved
    assert (tmp_path / "merges.txt").read_text().splitlines()[0].startswith("#version")
    assert json.loads((tmp_path / "vocab.json").read_text()) == tokenizer.get_vocab()
    sentence = "there are two objects: a big striped scarlet disc and a hollow cyan box."
    expected = tokenizer(sentence)["input_ids"]
    for cls in (CLIPTokenizer, CLIPTokenizerFast, AutoTokenizer):
        assert cls.from_pretrained(tmp_path)(sentence)["input_ids"] == expected
    # CLIP's original two files alone (no tokenizer.json) give the same tokens
    only_bpe = tmp_path / "bpe-only"
    only_bpe.mkdir()
    for name in ("vocab.json", "merges.txt"):
        (only_bpe / name).write_bytes((tmp_path / name).read_bytes())
    assert CLIPTokenizer.from_pretrained(only_bpe)(sentence)["input_ids"] == expected


def test_too_small_vocabulary_is_refused(texts):
    with pytest.raises(ConfigError, match="vocab_size"):
        train_clip_tokenizer(texts, vocab_size=300)


def test_config_takes_ids_and_positions_from_the_tokenizer(tokenizer, world):
    config = build_clip_teacher_config(tokenizer, max_position_embeddings=tokenizer.model_max_length, image_size=48,
                                       patch_size=12, projection_dim=32, text_hidden_size=32, vision_hidden_size=32,
                                       text_layers=1, vision_layers=1)
    text = config.text_config
    assert (text.bos_token_id, text.eos_token_id, text.pad_token_id) == (
        tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    assert text.eos_token_id != 2  # 2 would switch CLIP to legacy pooling at the highest token id
    assert text.vocab_size == len(tokenizer)
    assert text.max_position_embeddings >= context_prompt_length(tokenizer, world.class_names,
                                                                 DEFAULT_LEARNED_CONTEXTS)


def test_every_position_is_reached_by_training_text(tokenizer, texts, world):
    """The position table is as long as at least 1% of the training texts reach, and holds a DualCoOp prompt with
    16 learned contexts ("X X ... X <class name>."); positions past a text's end-of-text never get a gradient."""
    positions = tokenizer.model_max_length
    lengths = np.array([len(tokenizer(t)["input_ids"]) for t in texts])
    assert (lengths >= positions).sum() >= 6
    assert trained_positions(tokenizer, texts, 6) >= positions
    dualcoop_prompt = tokenizer(" ".join(["x"] * DEFAULT_LEARNED_CONTEXTS) + " purple crescent.")["input_ids"]
    assert len(dualcoop_prompt) <= context_prompt_length(tokenizer, world.class_names, DEFAULT_LEARNED_CONTEXTS)
    assert len(dualcoop_prompt) <= positions
    # captions too short for the contexts are refused, not silently left with untrained positions
    with pytest.raises(ConfigError, match="learned contexts"):
        required_positions(tokenizer, ["a star.", "a red circle."], world.class_names, learned_contexts=16)


def test_pooled_output_is_the_end_of_text_state(tokenizer):
    from transformers import CLIPModel

    config = build_clip_teacher_config(tokenizer, max_position_embeddings=tokenizer.model_max_length, image_size=64,
                                       patch_size=8, projection_dim=32, text_hidden_size=32, vision_hidden_size=32,
                                       text_layers=1, vision_layers=1)
    torch.manual_seed(0)
    model = CLIPModel(config).eval()
    batch = tokenizer(["a star.", "a photo of a small striped blue hexagon in the top left corner."], padding=True,
                      return_tensors="pt")
    with torch.no_grad():
        output = model.text_model(**batch)
    end = [row.tolist().index(tokenizer.eos_token_id) for row in batch["input_ids"]]
    assert end[0] < end[1]  # the short text is padded with end-of-text tokens after its own
    expected = output.last_hidden_state[torch.arange(2), torch.tensor(end)]
    torch.testing.assert_close(output.pooler_output, expected)
    # a prompt as long as the position table allows (learned contexts + class prompt) still runs
    long_ids = torch.full((1, config.text_config.max_position_embeddings), tokenizer.bos_token_id)
    long_ids[0, -1] = tokenizer.eos_token_id
    with torch.no_grad():
        assert model.text_model(input_ids=long_ids).pooler_output.shape == (1, 32)


def test_legacy_end_of_text_id_is_refused(tokenizer):
    class LegacyIds:
        eos_token_id, bos_token_id, pad_token_id, model_max_length = 2, 0, 2, 8

        def __len__(self):
            return 10

    with pytest.raises(ConfigError, match="legacy"):
        build_clip_teacher_config(LegacyIds(), max_position_embeddings=8, image_size=48, patch_size=12)
    with pytest.raises(ConfigError, match="multiple"):
        build_clip_teacher_config(tokenizer, max_position_embeddings=80, image_size=48, patch_size=10)


def test_fast_pixel_path_equals_the_processor(tokenizer, world):
    processor = build_clip_processor(tokenizer, 64)
    images = list(world.single_object(6, seed=1)["image"])
    expected = processor(images=images, return_tensors="pt")["pixel_values"]
    fast = pixel_values_from_uint8(np.stack([np.asarray(image) for image in images]))
    torch.testing.assert_close(fast, expected, atol=1e-5, rtol=0)
