"""The digits model: a small Vision Transformer trained here on 8 x 8 handwritten digits.

An image model: its input is a picture, not a text. Any picture ((H, W, 3) RGB or (H, W) grey in [0, 1], as
headscope/models/images.py's read_image gives it) is fitted (`fit`) to what the network reads: 8 x 8 grey pixels in
[0, 1], ink bright, as scikit-learn's digits are. Those are cut into 2 x 2 patches, a 4 x 4 grid read row by row,
and a class token is put first: 17 positions. Every layer's self-attention runs over those positions, so each kind's layout is
PATCH_SELF (rows and columns are the `patches` axis). The Analysis names the positions (`tokens`:
"[CLS]", then "r0c0" .. "r3c3"), marks the class token special, and says in `image` the patch grid, the patch
size, the class token's position, the prediction, every class's probability, whether the picture was inverted and
`seen`, a PNG of the 8 x 8 pixels read.

The network is headscope/models/nets/vit.py's `ViT`, trained by headscope/training/digits.py on scikit-learn's
copy of the UCI handwritten digits (`load_digits`, offline); see docs/digits.md.

Legend: S image side, P patch side, G grid side, T = 1 + G * G positions, K classes, L layers, H heads.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from headscope.data import WEIGHTS
from headscope.models.adapter import Adapter, Outputs, Prepared
from headscope.models.analysis import PATCH_SELF, ModelInfo
from headscope.models.images import ImageInfo, NotAnImage, image_fields, png_data_url
from headscope.models.nets.vit import ViT, ViTConfig, patchify

DEFAULT_WEIGHTS = WEIGHTS / "digits.safetensors"
CLASS_TOKEN = "[CLS]"
PIXEL_MAX = 16  # load_digits' pixels are integers 0..16
SPLIT_SEED = 0  # the permutation that holds out the test images
TEST_SHARE = 0.2  # the share of images held out
GREY = (0.299, 0.587, 0.114)  # RGB -> grey, ITU-R BT.601 luma (what Pillow's convert("L") weighs)


def load_images() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's UCI digits: images (1797, 8, 8) float32 in [0, 1] and labels (1797,) int64."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32) / PIXEL_MAX  # (1797, 8, 8)
    return images, torch.tensor(digits.target, dtype=torch.long)  # (1797, 8, 8), (1797,)


def held_out(images: torch.Tensor, labels: torch.Tensor, seed: int = SPLIT_SEED, share: float = TEST_SHARE):
    """((train images, labels), (held-out images, labels)): a permutation seeded by `seed` holds out `share`."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    n_test = round(share * len(images))
    test, train = order[:n_test], order[n_test:]
    return (images[train], labels[train]), (images[test], labels[test])


def config_to_metadata(config: ViTConfig) -> dict[str, str]:
    """safetensors metadata: one key, so the file's bytes do not depend on the order of a map."""
    return {"config": json.dumps(vars(config), sort_keys=True)}


def config_from_metadata(metadata: dict[str, str]) -> ViTConfig:
    return ViTConfig(**json.loads(metadata["config"]))


def position_names(grid: int) -> list[str]:
    """The class token, then each patch by its grid row and column, row by row."""
    return [CLASS_TOKEN, *(f"r{r}c{c}" for r in range(grid) for c in range(grid))]


# what an ablation's effect adds for an image model (headscope/models/effect.py's `measures`)
IMAGE_MEASURES = {
    "prediction": {"axis": None, "meaning": "The class the model predicts with the heads ablated (compare "
                   "image.prediction, the un-ablated one)."},
    "probabilities": {"axis": "classes", "meaning": "Per class (image.classes): its probability with the heads "
                      "ablated (compare image.probabilities)."},
}


class DigitsModel(Adapter):
    """Adapter: an 8 x 8 image -> Analysis with the self-attention of every layer and head over its patches."""

    def __init__(self, net: ViT):
        self.net = net.eval()
        config = net.config
        G = config.grid
        self.image = ImageInfo(size=(config.image_size, config.image_size), channels=1,
                               patch_size=(config.patch_size, config.patch_size), patch_grid=(G, G), class_token=0,
                               classes=tuple(str(k) for k in range(config.classes)), pad=True)
        self.info = ModelInfo(
            name="digits",
            description=(
                f"Vision Transformer trained here on scikit-learn's 8 × 8 handwritten digits: {config.patch_size} × "
                f"{config.patch_size} patches (a {G} × {G} grid) and a class token, {config.layers} layers of "
                f"{config.heads} heads; it takes an image, not a text."
            ),
            layers=config.layers,
            heads=config.heads,
            max_tokens=config.positions,
            kinds={"encoder": PATCH_SELF},
            example="",
            takes="image",
        )

    @classmethod
    def load(cls, path: str | Path | None = None) -> "DigitsModel":
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(path) if path is not None else DEFAULT_WEIGHTS
        with safe_open(str(path), framework="pt") as f:
            config = config_from_metadata(f.metadata())
        net = ViT(config)
        net.load_state_dict(load_file(str(path)))
        return cls(net)

    def count_tokens(self, text) -> int:
        return self.info.max_tokens  # every image is the class token and the whole grid

    def attention_modules(self) -> dict:
        """(kind, layer) -> the attention module that computes it (see headscope/models/interventions.py)."""
        return {("encoder", i): block.attn for i, block in enumerate(self.net.blocks)}

    def prepare(self, image, truncate: bool = False, new_tokens: int | None = None) -> Prepared:
        """A picture: an (H, W, 3) RGB or (H, W) grey tensor in [0, 1] of any size (headscope/models/images.py's
        read_image gives the first), fitted by `fit`. Anything else: NotAnImage."""
        pixels, inverted = self.fit(image)  # (S, S)
        tokens = position_names(self.net.config.grid)
        fields = {"tokens": tokens, "offsets": [None] * len(tokens), "special": [True] + [False] * (len(tokens) - 1),
                  "words": [None] + list(range(len(tokens) - 1)), "truncated": False, "generated": None,
                  "stopped": None}
        return Prepared("", fields, {"image": pixels, "inverted": inverted})

    def fit(self, image) -> tuple[torch.Tensor, bool]:
        """A picture -> (the (S, S) grey pixels the network reads, whether it was inverted). As scikit-learn's
        digits: grey (BT.601 luma of RGB), ink bright (a picture whose mean is above 0.5 is mostly bright paper,
        so it is inverted), padded with dark to a square (centred), then area-averaged to S x S (an S x S grey
        picture with dark paper passes unchanged)."""
        S = self.net.config.image_size
        name = self.info.name
        if not isinstance(image, torch.Tensor):
            raise NotAnImage(f"{name} takes an image (a picture, fitted to {S} x {S} grey pixels), not "
                             f"{type(image).__name__}")
        shape = tuple(image.shape)
        if not (len(shape) == 2 or (len(shape) == 3 and shape[2] == 3)) or min(shape[:2]) < 1:
            raise NotAnImage(f"{name} takes an (H, W, 3) RGB or (H, W) grey picture ({S} x {S} is what it reads); "
                             f"got shape {shape}")
        x = image.detach().float().clamp(0, 1)
        if x.ndim == 3:
            x = x @ torch.tensor(GREY)  # (H, W)
        inverted = bool(x.mean() > 0.5)
        if inverted:
            x = 1 - x
        H, W = x.shape
        side = max(H, W)
        top, left = (side - H) // 2, (side - W) // 2
        x = torch.nn.functional.pad(x, (left, side - W - left, top, side - H - top))  # (side, side), dark padding
        if side != S:
            x = torch.nn.functional.interpolate(x[None, None], size=(S, S), mode="area")[0, 0]  # (S, S)
        return x.contiguous(), inverted

    def forward(self, batch: list[Prepared]) -> list[Outputs]:
        images = torch.stack([p.inputs["image"] for p in batch])  # (B, S, S)
        hidden, patterns = self.net.features(images)  # (B, T, C), (L, B, H, T, T)
        logits = self.net.head(hidden[:, 0])  # (B, K)
        return [Outputs({"encoder": patterns[:, b].contiguous()}, hidden=hidden[b], logits=logits[b: b + 1])
                for b in range(len(batch))]  # (L, H, T, T), (T, C), (1, K)

    def analysis(self, prepared: Prepared, outputs: Outputs, base: Outputs, effect: dict | None = None):
        """The Adapter's Analysis, with `image`: the grid, the prediction and each class's probability (from the
        un-ablated pass; with an ablation, `effect` holds the ablated one's)."""
        a = super().analysis(prepared, outputs, base, effect)
        a.image = {**self.image_fields(base.logits[0]), "inverted": prepared.inputs["inverted"],
                   "seen": png_data_url(prepared.inputs["image"])}
        if effect is not None:
            after = self.image_fields(outputs.logits[0])
            measures = {**effect.get("measures", {}), **IMAGE_MEASURES}
            a.effect = {**effect, "prediction": after["prediction"], "probabilities": after["probabilities"],
                        "measures": measures}
        return a

    def image_fields(self, logits: torch.Tensor) -> dict:
        """logits (K,) -> the image fields of an Analysis."""
        return image_fields(self.image, logits)

    def analyze_image(self, image: torch.Tensor, ablation=None):
        """Run one picture ((H, W, 3) or (H, W) in [0, 1], fitted by `fit`): an Analysis over its patches."""
        return self.analyze_batch([image], ablation=ablation)[0]


@torch.no_grad()
def class_token_reads(net: ViT, images: torch.Tensor) -> dict:
    """What the class token reads, averaged over `images` (B, S, S), per layer and head (lists [layer][head]):
      self       its attention on itself
      ink        its attention on the patches that hold any ink (a pixel > 0)
      ink_share  the share of patches that hold ink (what `ink` would be if it spread evenly over the patches,
                 scaled by 1 - self)
    """
    was_training = net.training
    net.eval()
    _, patterns = net(images)  # (L, B, H, T, T)
    net.train(was_training)
    cls = patterns[:, :, :, 0, :]  # (L, B, H, T): the class token's row
    inked = (patchify(images, net.config.patch_size) > 0).any(-1).float()  # (B, N)
    ink = (cls[..., 1:] * inked[None, :, None, :]).sum(-1).mean(1)  # (L, H)
    return {"self": cls[..., 0].mean(1).tolist(), "ink": ink.tolist(), "ink_share": inked.mean().item()}
