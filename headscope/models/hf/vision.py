"""Your own Vision Transformer checkpoints: a transformers image-classification or image-feature folder (ViT, DeiT,
BEiT, DINOv2) with its image processor, run by transformers with eager attention, nothing downloaded, no
checkpoint code run (trust_remote_code=False).

A picture ((H, W, 3) RGB in [0, 1], as headscope/models/images.py's read_image gives it) goes through the folder's
own image processor (resize, rescale, normalise: what the checkpoint was trained with); the network's positions are
its prefix tokens ("[CLS]", DeiT's "[DIST]", DINOv2's register tokens "[REG0]" ...), then the patches row by row,
"r{row}c{col}". Attention comes from transformers' own `output_attentions` (eager), so it equals what transformers
computes; heads are reached through the same attention interface as text checkpoints (headscope/models/hf/
attention.py), so ablation, value norms and the mechanism view work as they do for those.

A classification checkpoint says the prediction and every class's probability (`id2label` names the classes); a
feature checkpoint (AutoModel) predicts nothing and says so: `predicts` false, `prediction` null, `classes` empty.
The patch grid is cut from the pixels the processor makes (not the config's image_size); the positions that are
not patches (class, distillation and register tokens) are said as `not_patches`, the first patch as `first_patch`.
"""

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from headscope.models.adapter import Adapter, Outputs, Prepared
from headscope.models.analysis import PATCH_SELF, ModelInfo
from headscope.models.hf.model import (
    HFModel,
    CheckpointError,
    find_hook_points,
    find_output_projections,
    headscope_modules,
    one_line,
    traced_probe,
    weight_files,
)
from headscope.models.images import ImageInfo, NotAnImage, image_fields, png_data_url

# a class token (+ DeiT's distillation token, + DINOv2's register tokens), then every patch
FAMILIES = ("vit", "deit", "beit", "dinov2", "dinov2_with_registers")
PREFIX_NAMES = {"deit": ("[CLS]", "[DIST]")}


def is_vision_checkpoint(path: str | Path) -> bool:
    """Whether a folder holds a vision transformer config (its model_type is one of transformers' image models)."""
    import json

    try:
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_MAPPING_NAMES

    return isinstance(config, dict) and config.get("model_type") in MODEL_FOR_IMAGE_MAPPING_NAMES


def prefix_names(model_type: str, count: int) -> list[str]:
    named = PREFIX_NAMES.get(model_type, ("[CLS]",))
    return [named[i] if i < len(named) else f"[REG{i - 1}]" for i in range(count)]


class HFVisionModel(Adapter):
    """Adapter: a picture -> Analysis of every layer and head's self-attention over the checkpoint's positions."""

    def __init__(self, name: str, net, processor, description: str, layers: int, heads: int, positions: int,
                 size: tuple[int, int]):
        """`size`: (height, width) of the processor's pixel_values, the picture the network reads: the patch grid
        is cut from it (DINOv2 reads other sizes than its config's image_size, its position embeddings
        interpolated)."""
        self.net = net.eval()
        self.processor = processor
        config = net.config
        patch = config.patch_size if isinstance(config.patch_size, int) else config.patch_size[0]
        rows, cols = size[0] // patch, size[1] // patch
        self.prefix = positions - rows * cols
        if self.prefix < 1:
            raise CheckpointError(f"{name}: {positions} positions for a {rows} x {cols} patch grid: not a class token "
                                  "and the patches")
        labels = getattr(config, "id2label", None) or {}
        self.classifies = hasattr(net, "classifier")
        classes = tuple(labels[i] for i in sorted(labels)) if self.classifies else ()
        self.image = ImageInfo(size=tuple(size), channels=3, patch_size=(patch, patch), patch_grid=(rows, cols),
                               class_token=0, classes=classes, first_patch=self.prefix,
                               not_patches=tuple(range(self.prefix)), predicts=self.classifies, pad=False)
        self.tokens = prefix_names(config.model_type, self.prefix) + [f"r{r}c{c}" for r in range(rows)
                                                                      for c in range(cols)]
        self.info = ModelInfo(name=name, description=description, layers=layers, heads=heads, max_tokens=positions,
                              kinds={"encoder": PATCH_SELF}, example="", takes="image")
        self.modules = self.out_projs = self.points = self.mlps = None

    @classmethod
    def load(cls, name: str, path: str | Path) -> "HFVisionModel":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        path = Path(path).expanduser()
        if not weight_files(path):
            raise CheckpointError(f"{path} has no weights (model.safetensors); save them with model.save_pretrained")
        import transformers
        from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification
        from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES

        options = dict(local_files_only=True, trust_remote_code=False)
        try:
            config = AutoConfig.from_pretrained(path, **options)
        except Exception as e:  # noqa: BLE001 - unknown type, custom code, bad JSON
            raise CheckpointError(f"{path}/config.json: transformers cannot read it: {one_line(e)}") from None
        if config.model_type not in FAMILIES:
            raise CheckpointError(f"{path} is a {config.model_type} image model; Headscope reads the vision "
                                  f"transformers whose positions are a class token and the patches: "
                                  f"{', '.join(FAMILIES)}")
        if not (path / "preprocessor_config.json").is_file():
            raise CheckpointError(f"{path} has no image processor (preprocessor_config.json): Headscope fits a "
                                  "picture as the checkpoint was trained; save one there with "
                                  "processor.save_pretrained(PATH)")
        try:
            processor = AutoImageProcessor.from_pretrained(path, **options)
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"{path}: cannot load its image processor: {one_line(e)}") from None
        heads_for = (config.architectures or [""])[0].endswith("ForImageClassification") \
            and config.model_type in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES
        auto = AutoModelForImageClassification if heads_for else AutoModel
        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()
        try:
            net = auto.from_pretrained(path, config=config, attn_implementation="eager", dtype=torch.float32,
                                       weights_only=True, **options)
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"{path}: transformers cannot load it as {auto.__name__} with eager attention: "
                                  f"{one_line(e)}") from None
        finally:
            transformers.logging.set_verbosity(verbosity)
        probe_image = torch.rand(32, 32, 3, generator=torch.Generator().manual_seed(0))  # (H, W, 3)
        pixels = cls.pixels_of(processor, probe_image)

        def run():
            with torch.no_grad():
                return net(pixel_values=pixels, output_attentions=True).attentions

        attentions, trace = traced_probe(net, run)  # the one probe pass (headscope/models/hf/model.py)
        layers, heads, positions = len(attentions), attentions[0].shape[1], attentions[0].shape[-1]
        params = sum(p.numel() for p in net.parameters())
        arch_name = (config.architectures or [type(net).__name__])[0]
        description = (f"{arch_name} ({params:,} parameters) from the folder {path.name}, run by transformers; it "
                       "takes an image, fitted by the folder's image processor")
        model = cls(name, net, processor, description, layers, heads, positions, tuple(pixels.shape[-2:]))
        model.modules = headscope_modules(net, trace, "encoder", {"encoder": layers})
        model.out_projs = find_output_projections(trace, model.modules)
        model.points, model.mlps, _ = find_hook_points(net, trace, "encoder", model.modules, model.out_projs)
        return model

    @staticmethod
    def pixels_of(processor, image: torch.Tensor) -> torch.Tensor:
        """(H, W, 3) float RGB in [0, 1] -> the processor's pixel_values (1, 3, S, S)."""
        array = (image.detach().float().clamp(0, 1).numpy() * 255).round().astype(np.uint8)  # (H, W, 3)
        return processor(images=Image.fromarray(array, "RGB"), return_tensors="pt")["pixel_values"].float()

    def seen(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixel_values (3, S, S) -> the picture the network read, (S, S, 3) in [0, 1] (the normalisation undone)."""
        p = self.processor
        x = pixels
        if getattr(p, "do_normalize", False):
            x = x * torch.tensor(p.image_std)[:, None, None] + torch.tensor(p.image_mean)[:, None, None]
        if not getattr(p, "do_rescale", True):
            x = x / 255
        return x.permute(1, 2, 0).clamp(0, 1)

    def count_tokens(self, text) -> int:
        return self.info.max_tokens

    # the heads and the stream are reached as in a text checkpoint (the same attributes, the same reasons said)
    attention_modules = HFModel.attention_modules
    output_projections = HFModel.output_projections
    hook_points = HFModel.hook_points

    def prepare(self, image, truncate: bool = False, new_tokens: int | None = None) -> Prepared:
        """A picture: an (H, W, 3) RGB or (H, W) grey tensor in [0, 1] of any size, fitted by the image processor."""
        name = self.info.name
        if not isinstance(image, torch.Tensor):
            raise NotAnImage(f"{name} takes an image (a picture), not {type(image).__name__}")
        if image.ndim == 2:
            image = image[..., None].expand(*image.shape, 3)
        if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
            raise NotAnImage(f"{name} takes an (H, W, 3) RGB or (H, W) grey picture; got shape {tuple(image.shape)}")
        pixels = self.pixels_of(self.processor, image)[0]  # (3, S, S)
        if tuple(pixels.shape[-2:]) != self.image.size:  # a processor that keeps each picture's aspect ratio
            raise NotAnImage(f"{name}'s image processor made {tuple(pixels.shape[-2:])} pixels of this picture, not "
                             f"the {self.image.size} it makes of others: Headscope reads one patch grid per model; "
                             "crop the picture to the processor's aspect ratio")
        n = len(self.tokens)
        fields = {"tokens": list(self.tokens), "offsets": [None] * n,
                  "special": [True] * self.prefix + [False] * (n - self.prefix),
                  "words": [None] * self.prefix + list(range(n - self.prefix)), "truncated": False,
                  "generated": None, "stopped": None}
        return Prepared("", fields, {"pixels": pixels, "inverted": False})

    def forward(self, batch: list[Prepared]) -> list[Outputs]:
        pixels = torch.stack([p.inputs["pixels"] for p in batch])  # (B, 3, S, S)
        out = self.net(pixel_values=pixels, output_attentions=True, output_hidden_states=True)
        patterns = torch.stack(out.attentions, 1).float()  # (B, L, H, T, T)
        hidden = out.hidden_states[-1]  # (B, T, C)
        logits = out.logits if self.classifies else None  # (B, K)
        return [Outputs({"encoder": patterns[b].contiguous()}, hidden=hidden[b],
                        logits=None if logits is None else logits[b: b + 1]) for b in range(len(batch))]

    def analysis(self, prepared: Prepared, outputs: Outputs, base: Outputs, effect: dict | None = None):
        a = super().analysis(prepared, outputs, base, effect)
        a.image = {**self.image_fields(base.logits), "inverted": False,
                   "seen": png_data_url(self.seen(prepared.inputs["pixels"]))}
        if effect is not None and outputs.logits is not None:
            from headscope.models.digits import IMAGE_MEASURES

            after = self.image_fields(outputs.logits)
            a.effect = {**effect, "prediction": after["prediction"], "probabilities": after["probabilities"],
                        "measures": {**effect.get("measures", {}), **IMAGE_MEASURES}}
        return a

    def image_fields(self, logits: torch.Tensor | None) -> dict:
        """logits (1, K) or None (a feature model) -> the `image` fields of an Analysis."""
        return image_fields(self.image, None if logits is None else logits[0])
