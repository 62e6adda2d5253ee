"""Tiny random Hugging Face checkpoints of every family, built offline, for the tests of every layer.

The checkpoints are tiny random models (2 layers, 4 heads, width 32; Llama with 2 key/value heads), each with a
tokenizer trained here by the `tokenizers` library on a few sentences and handed to its family's transformers
tokenizer class, which adds the family's own pre-tokenizer, decoder and special-token template (BERT [CLS] … [SEP],
RoBERTa/BART <s> … </s>, Llama <s> …, T5 … </s>, GPT-2 none). Weights are larger than usual so that greedy
generation writes varied tokens.
"""

import json
import math
import re
from collections import Counter
from pathlib import Path

import torch
import transformers as tf
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

SENTENCES = [
    "The cat sat on the mat because it was warm.",
    "Dogs bark at night, loudly!",
    "A quick brown fox jumps over the lazy dog.",
    "Birds sing in the morning and in the evening.",
    "She wrote a letter to her friend in Paris.",
]
POSITIONS = 64  # every model's input positions (RoBERTa: 66, as its positions start after the padding id)
FAMILIES = ("bert", "distilbert", "roberta", "gpt2", "llama", "bart", "t5")
SIZE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, initializer_range=0.3)


# The tokenizers are made the same in every run: the `tokenizers` trainers number their vocabulary in an order
# that depends on a hash seed that changes per process (and WordPiece's and Unigram's results vary too), and
# a random model's outputs follow its token ids, so a trained tokenizer would make every test's model differ.

def canonical_ids(tokens, specials: list[str]) -> dict[str, int]:
    """Ids by a fixed rule: the special tokens first, in order, then every other token sorted."""
    return {t: i for i, t in enumerate([*specials, *sorted(set(tokens) - set(specials))])}


def trained(model, pre_tokenizer, trainer) -> dict:
    """The `model` section of a tokenizer trained on SENTENCES."""
    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.train_from_iterator(SENTENCES, trainer)
    return json.loads(tokenizer.to_str())["model"]


def pieces() -> list[str]:
    """The words of SENTENCES as BERT's pre-tokenizer splits them: runs of letters or digits, and each other character."""
    return [w for sentence in SENTENCES for w in re.findall(r"\w+|[^\w\s]", sentence)]


def wordpiece() -> dict[str, int]:
    """Lowercased words of up to 3 characters whole, every character alone and as a continuation `##c`: longer
    words are split into pieces, as a real WordPiece vocabulary splits rare words."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = [w.lower() for w in pieces() if len(w) <= 3]
    chars = {c.lower() for w in pieces() for c in w}
    return canonical_ids([*words, *chars, *(f"##{c}" for c in chars)], specials)


def bpe(pre_tokenizer, specials: list[str], **options) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A trained BPE: its merges come out the same every run; its ids are renumbered by canonical_ids."""
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials, show_progress=False, **options)
    model = trained(models.BPE(), pre_tokenizer, trainer)
    return canonical_ids(model["vocab"], specials), [tuple(m) for m in model["merges"]]


def unigram(specials: list[str]) -> list[tuple[str, float]]:
    """Metaspace words ("▁word") and single characters, each scored by the log of its share of all counts."""
    counts = Counter()
    for word in (w for sentence in SENTENCES for w in sentence.split()):
        counts["▁" + word] += 1
        counts.update(word)
    counts["▁"] += sum(counts.values())  # a lone word boundary, for words not in the vocabulary
    total = sum(counts.values())
    return [(t, 0.0) for t in specials] + [(t, math.log(c / total)) for t, c in sorted(counts.items())]


def byte_level_bpe(specials: list[str]):
    return bpe(pre_tokenizers.ByteLevel(add_prefix_space=False), specials,
               initial_alphabet=pre_tokenizers.ByteLevel.alphabet())


def build(family: str):
    """(tokenizer, model) of one family, the model in eval mode with eager attention."""
    torch.manual_seed(0)
    if family in ("bert", "distilbert"):
        vocab = wordpiece()
        if family == "bert":
            tokenizer = tf.BertTokenizer(vocab=vocab)
            config = tf.BertConfig(vocab_size=len(tokenizer), max_position_embeddings=POSITIONS, **SIZE)
            model = tf.BertForMaskedLM(config)  # served through AutoModel: the masked-LM head is left out
        else:
            tokenizer = tf.DistilBertTokenizer(vocab=vocab)
            model = tf.DistilBertModel(tf.DistilBertConfig(
                vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                max_position_embeddings=POSITIONS, initializer_range=0.3))
    elif family in ("roberta", "bart"):
        vocab, merges = byte_level_bpe(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        tokenizer = (tf.RobertaTokenizer if family == "roberta" else tf.BartTokenizer)(vocab=vocab, merges=merges)
        ids = dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                   eos_token_id=tokenizer.eos_token_id)
        if family == "roberta":
            model = tf.RobertaModel(tf.RobertaConfig(vocab_size=len(tokenizer), max_position_embeddings=POSITIONS + 2,
                                                     **ids, **SIZE))
        else:
            model = tf.BartForConditionalGeneration(tf.BartConfig(
                vocab_size=len(tokenizer), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=256,
                init_std=0.3, decoder_start_token_id=tokenizer.eos_token_id, forced_eos_token_id=None, **ids))
    elif family == "gpt2":
        vocab, merges = byte_level_bpe(["<|endoftext|>"])
        tokenizer = tf.GPT2Tokenizer(vocab=vocab, merges=merges)
        model = tf.GPT2LMHeadModel(tf.GPT2Config(
            vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=POSITIONS, initializer_range=0.3,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id))
    elif family == "llama":
        vocab, merges = bpe(pre_tokenizers.Metaspace(), ["<unk>", "<s>", "</s>"])
        tokenizer = tf.LlamaTokenizer(vocab=vocab, merges=merges, add_bos_token=True)
        model = tf.LlamaForCausalLM(tf.LlamaConfig(
            vocab_size=len(tokenizer), num_key_value_heads=2, max_position_embeddings=POSITIONS,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **SIZE))
    elif family == "t5":
        tokenizer = tf.T5Tokenizer(vocab=unigram(["<pad>", "</s>", "<unk>"]), extra_ids=0)
        model = tf.T5ForConditionalGeneration(tf.T5Config(
            vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, initializer_factor=15.0,
            decoder_start_token_id=tokenizer.pad_token_id, pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id))
    else:
        raise ValueError(family)
    model.set_attn_implementation("eager")
    return tokenizer, model.eval()


def save(directory: Path, tokenizer, model) -> Path:
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


# ---- Vision Transformers (headscope/models/hf/vision.py) --------------------------------------------------------

VISION_FAMILIES = ("vit", "deit", "beit", "dinov2")
CLASSES = {0: "cat", 1: "dog", 2: "<b>bird</b>"}  # a label that is markup: shown literally


def build_vision(family: str, classifier: bool = True, side: int = 32):
    """A tiny random Vision Transformer of the family: side x side pictures (32: a 4 x 4 grid), 8 x 8 patches, width
    32, 2 layers x 4 heads; an image classifier of 3 classes, or (classifier False) the bare feature model. Large
    random weights, so that attention is far from uniform and one head's ablation shows."""
    size = dict(image_size=side, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                initializer_range=0.5, id2label=CLASSES, label2id={v: k for k, v in CLASSES.items()})
    if family == "dinov2":
        config = tf.Dinov2Config(mlp_ratio=2, **size)
    elif family == "dinov2_with_registers":  # 2 register tokens after the class token
        config = tf.Dinov2WithRegistersConfig(mlp_ratio=2, num_register_tokens=2, **size)
    else:
        config = {"vit": tf.ViTConfig, "deit": tf.DeiTConfig, "beit": tf.BeitConfig}[family](intermediate_size=64, **size)
    classes = {"vit": tf.ViTForImageClassification, "deit": tf.DeiTForImageClassification,
               "beit": tf.BeitForImageClassification, "dinov2": tf.Dinov2ForImageClassification,
               "dinov2_with_registers": tf.Dinov2WithRegistersForImageClassification}
    features = {"vit": tf.ViTModel, "deit": tf.DeiTModel, "beit": tf.BeitModel, "dinov2": tf.Dinov2Model,
                "dinov2_with_registers": tf.Dinov2WithRegistersModel}
    torch.manual_seed(0)
    return (classes if classifier else features)[family](config).eval()


def save_vision(directory: Path, family: str, classifier: bool = True, size: tuple[int, int] = (32, 32)) -> Path:
    """The tiny model and an image processor of its own (its own mean and std, a resize to `size` (height, width):
    DINOv2 reads other sizes than its config's 32 x 32, its position embeddings interpolated) in `directory`."""
    build_vision(family, classifier).save_pretrained(directory)
    tf.ViTImageProcessor(size={"height": size[0], "width": size[1]}, image_mean=[0.5, 0.4, 0.3],
                         image_std=[0.2, 0.25, 0.3]).save_pretrained(directory)
    return directory

# --- tiny GGUF files (llama.cpp's format) of the architectures transformers reads from GGUF ---------------------
#
# Each file is one tiny random causal LM written with the `gguf` package's GGUFWriter as llama.cpp's converter
# writes it, so that transformers' GGUF reader (transformers/modeling_gguf_pytorch_utils.py) rebuilds the same
# model from the file alone:
#   metadata   `{arch}.{key}` for every key of transformers' GGUF_CONFIG_MAPPING[arch] whose config attribute the
#              model has (block_count, embedding_length, attention.head_count(_kv), …), general.architecture and
#              general.name ("mistral" is a Llama-architecture file whose name is "mistral", as transformers reads it)
#   tensors    the name gguf's own get_tensor_name_map gives each transformers parameter (blk.N.attn_q.weight …),
#              float32, with the inverse of the reader's TensorProcessor: Llama/Mistral q and k rows permuted as
#              llama.cpp permutes them, GPT-2's Conv1D weights transposed, `output.weight` only when untied
#   tokenizer  tokenizer.ggml.model "gpt2" (byte-level BPE): tokens by id, merges "a b", token types (3 = control
#              for the special token), bos/eos ids, so transformers builds a fast tokenizer from the file
# The tiny models are the tiny checkpoints above (GPT-2, Llama) and three more causal families (Qwen2 with q/k/v
# biases, Mistral, Phi-3 with fused qkv and gate_up projections), all with 2 key/value heads where the family has
# grouped-query attention. GPT-2's file has 1024 positions (n_positions is not in its GGUF metadata).

GGUF_FAMILIES = ("gpt2", "llama", "qwen2", "mistral", "phi3")
GGUF_ARCH = {"gpt2": "gpt2", "llama": "llama", "qwen2": "qwen2", "mistral": "llama", "phi3": "phi3"}
GGUF_NAME = {"mistral": "Mistral-7B-Instruct-v0.2"}  # as llama.cpp names a real Mistral file (read as Llama)
GGUF_PRE = {"gpt2": "gpt-2", "qwen2": "qwen2"}  # tokenizer.ggml.pre: the split rule transformers applies
GGUF_TOKEN_NORMAL, GGUF_TOKEN_CONTROL = 1, 3


def build_causal(family: str):
    """(tokenizer, model) of a causal family a GGUF file holds: the tiny checkpoints' GPT-2 and Llama, and Qwen2,
    Mistral, Phi-3 of the same size with a byte-level BPE tokenizer."""
    if family == "llama":
        return build("llama")
    torch.manual_seed(0)
    vocab, merges = byte_level_bpe(["<|endoftext|>"])
    tokenizer = tf.GPT2Tokenizer(vocab=vocab, merges=merges)
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    grouped = dict(num_key_value_heads=2, max_position_embeddings=POSITIONS, vocab_size=len(tokenizer), **ids, **SIZE)
    if family == "gpt2":
        model = tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4,
                                                 n_positions=1024, initializer_range=0.3, **ids))
    elif family == "qwen2":
        model = tf.Qwen2ForCausalLM(tf.Qwen2Config(tie_word_embeddings=False, **grouped))
    elif family == "mistral":
        model = tf.MistralForCausalLM(tf.MistralConfig(sliding_window=None, **grouped))
    elif family == "phi3":
        model = tf.Phi3ForCausalLM(tf.Phi3Config(pad_token_id=tokenizer.eos_token_id, **grouped))
    else:
        raise ValueError(family)
    model.set_attn_implementation("eager")
    return tokenizer, model.eval()


def llama_cpp_permute(weights, heads: int):
    """llama.cpp's row order for Llama's q and k projections (the inverse of transformers' reverse permute)."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def write_gguf(path: Path, family: str, name: str | None = None) -> Path:
    """Write the tiny model of `family` (build_causal) as a GGUF file at path, deterministically; `name` is its
    general.name (by default the one llama.cpp would give such a file)."""
    import gguf
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

    tokenizer, model = build_causal(family)
    config, arch = model.config, GGUF_ARCH[family]
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(name or GGUF_NAME.get(family, family))
    for key, attribute in GGUF_CONFIG_MAPPING[arch].items():
        if key == "rope.freq_base":
            value = (getattr(config, "rope_parameters", None) or {}).get("rope_theta")
        elif key == "rope.dimension_count":
            value = config.hidden_size // config.num_attention_heads if attribute else None
        else:
            value = getattr(config, attribute, None) if attribute else None
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int):
            writer.add_uint32(f"{arch}.{key}", value)
        elif isinstance(value, float):
            writer.add_float32(f"{arch}.{key}", value)
    if family == "gpt2":
        writer.add_uint32(f"{arch}.context_length", config.n_positions)

    vocab = tokenizer.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    assert [vocab[t] for t in tokens] == list(range(len(tokens)))
    writer.add_tokenizer_model("llama" if family == "llama" else "gpt2")  # Llama's tiny tokenizer is Metaspace BPE
    writer.add_tokenizer_pre(GGUF_PRE.get(family, "default"))
    writer.add_token_list(tokens)
    specials = set(tokenizer.all_special_tokens)
    writer.add_token_types([GGUF_TOKEN_CONTROL if t in specials else GGUF_TOKEN_NORMAL for t in tokens])
    backend = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in backend])
    writer.add_bos_token_id(config.bos_token_id)
    writer.add_eos_token_id(config.eos_token_id)
    if family == "llama":
        writer.add_unk_token_id(tokenizer.unk_token_id)
    if config.pad_token_id is not None:  # Phi-3's config would otherwise default to an id past the vocabulary
        writer.add_pad_token_id(config.pad_token_id)

    names = gguf.get_tensor_name_map(next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch),
                                     config.num_hidden_layers)
    tied = config.tie_word_embeddings
    for hf_name, tensor in model.state_dict().items():
        base, suffix = hf_name.rsplit(".", 1)
        gguf_name = names.get_name(base)
        if gguf_name is None:
            if base.endswith("attn.bias") or base.endswith("masked_bias"):  # GPT-2's causal mask buffers
                continue
            raise ValueError(f"{family}: no GGUF name for {hf_name}")
        if gguf_name == "output" and tied:
            continue  # llama.cpp leaves the tied output projection out; the reader ties it back
        weights = tensor.detach().to(torch.float32).numpy().copy()
        if arch == "llama" and gguf_name.endswith((".attn_q", ".attn_k")) and suffix == "weight":
            heads = config.num_attention_heads if gguf_name.endswith(".attn_q") else config.num_key_value_heads
            weights = llama_cpp_permute(weights, heads)
        if arch == "gpt2" and suffix == "weight" and gguf_name.endswith(
                (".attn_qkv", ".ffn_down", ".ffn_up", ".attn_output")):
            weights = weights.T.copy()  # Conv1D stores (in, out); GGUF stores (out, in)
        writer.add_tensor(f"{gguf_name}.{suffix}", weights)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
