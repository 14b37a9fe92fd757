"""HybridHash: hybrid convolutional and self-attention deep hashing.

He & Wei, "HybridHash: Hybrid Convolutional and Self-Attention Deep Hashing
for Image Retrieval", ICMR 2024 (arXiv 2405.07524).

The backbone is NesT (Zhang et al., "Nested Hierarchical Transformer", AAAI
2022): the patch map is cut into non-overlapping blocks and self-attention
runs inside each block only. HybridHash replaces NesT's block aggregation
with an *interaction module* (a local 3x3 convolution plus a global
attention over block-pooled tokens) and its classifier with a *hash head*
of the same hybrid design that ends in ``tanh``.

Shapes in comments use B batch, C channels, H/W map side, T blocks,
N tokens per block. With ``G = img_size / patch_size`` and L levels, the
block side is ``b = G / 2**(L-1)``; level i works on a map of side
``G / 2**i`` holding ``4**(L-1-i)`` blocks. The authors hard-code b = 14
(the paper configuration); here every size follows from the config, which
gives identical results at 224 px and makes small CPU models possible.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from timm.layers import DropPath, LayerNorm2d, Mlp, PatchEmbed, trunc_normal_
from timm.models.nest import blockify, deblockify  # (B, H, W, C) <-> (B, T, N, C), as in NesT
from torch import nn

from hhlib.quantize import Quantizer, SignQuantizer

__all__ = ["HashModel", "HybridHashConfig", "HybridHash", "blockify", "deblockify"]


@dataclass(frozen=True)
class HybridHashConfig:
    """Hyper-parameters of a HybridHash model. Defaults are the paper's."""

    img_size: int = 224  # input side in pixels (square images)
    patch_size: int = 4  # side of the non-overlapping patches of the stem
    in_chans: int = 3
    bits: int = 64  # length of the hash code
    embed_dims: tuple[int, ...] = (128, 256, 512)  # channels per level
    num_heads: tuple[int, ...] = (4, 8, 16)  # heads of the block attention per level
    depths: tuple[int, ...] = (2, 2, 15)  # transformer layers per level
    interaction_heads: int = 8  # heads of the global attention (authors: 8)
    mlp_ratio: float = 4.0  # hidden width of the MLP relative to C
    drop_path_rate: float = 0.5  # stochastic depth, rising linearly to this
    layer_norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        # Lists from JSON or a notebook become tuples, so configs hash and compare.
        for name in ("embed_dims", "num_heads", "depths"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        self._validate()

    def _validate(self) -> None:
        def positive_int(name: str, value) -> None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

        for name in ("img_size", "patch_size", "in_chans", "bits", "interaction_heads"):
            positive_int(name, getattr(self, name))
        if len(self.embed_dims) < 1:
            raise ValueError("embed_dims must name at least one level")
        if not (len(self.embed_dims) == len(self.num_heads) == len(self.depths)):
            raise ValueError(
                "embed_dims, num_heads and depths need one entry per level, got "
                f"{len(self.embed_dims)}, {len(self.num_heads)} and {len(self.depths)}"
            )
        for name in ("embed_dims", "num_heads", "depths"):
            for value in getattr(self, name):
                positive_int(f"every entry of {name}", value)
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size={self.img_size} is not divisible by patch_size={self.patch_size}")
        grid, factor = self.grid_size, 2 ** (self.num_levels - 1)
        if grid % factor:
            raise ValueError(
                f"the patch grid img_size/patch_size = {grid} is not divisible by {factor} "
                f"(= 2**(levels-1), needed to halve it {self.num_levels - 1} times)"
            )
        for level, (dim, heads) in enumerate(zip(self.embed_dims, self.num_heads)):
            if dim % heads:
                raise ValueError(f"embed_dims[{level}]={dim} is not divisible by num_heads[{level}]={heads}")
        # The interaction modules (levels >= 1) and the hash head attend with
        # interaction_heads over the channels of their level.
        for level, dim in enumerate(self.embed_dims):
            if (level > 0 or self.num_levels == 1) and dim % self.interaction_heads:
                raise ValueError(
                    f"embed_dims[{level}]={dim} is not divisible by interaction_heads={self.interaction_heads}"
                )
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be positive, got {self.mlp_ratio}")

    @property
    def num_levels(self) -> int:
        return len(self.embed_dims)

    @property
    def grid_size(self) -> int:
        """Side G of the patch map."""
        return self.img_size // self.patch_size

    @property
    def block_size(self) -> int:
        """Side b of a block: the map of the last level is exactly one block."""
        return self.grid_size // 2 ** (self.num_levels - 1)

    @classmethod
    def paper(cls, bits: int = 64, **overrides) -> HybridHashConfig:
        """The paper's model: 224 px, NesT-B widths, 55.6 M parameters at 64 bits."""
        return cls(bits=bits, **overrides)

    @classmethod
    def cpu(cls, bits: int = 64, img_size: int = 32, **overrides) -> HybridHashConfig:
        """A 0.83 M-parameter model for 28-32 px images that trains on a laptop CPU.

        Patch 2 on 32 px gives a 16x16 map and blocks of 4x4 tokens: level 0
        has 16 blocks, level 1 four, level 2 one, as in the paper's model.
        Widths 32/64/128 (a quarter of NesT-B's) with one head per 32
        channels: on 2 cores the 64/128/256 variant (3.3 M) took 2.2x longer
        per epoch and learned no better per epoch (docs/cpu_preset.md).
        """
        defaults = dict(
            img_size=img_size,
            patch_size=2,
            embed_dims=(32, 64, 128),
            num_heads=(1, 2, 4),
            depths=(1, 1, 2),
            drop_path_rate=0.1,
        )
        defaults.update(overrides)
        return cls(bits=bits, **defaults)

    def to_dict(self) -> dict:
        return asdict(self)


class Attention(nn.Module):
    """Multi-head self-attention over the second-to-last axis, any leading axes.

    Args:
        dim: channels C of the tokens.
        num_heads: heads; C must be divisible by it.
        qkv_bias: whether the q, k, v projection has a bias (the block
            attention has one, the global attention of the authors does not).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *lead, N, C = x.shape  # (..., N, C)
        # The leading axes are folded into one, L: scaled_dot_product_attention takes
        # its fused CPU kernel only for 4-D inputs (5-D ones fall back to the math path).
        qkv = self.qkv(x).reshape(-1, N, 3, self.num_heads, C // self.num_heads)  # (L, N, 3, heads, C/heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (L, heads, N, C/heads)
        x = F.scaled_dot_product_attention(q, k, v)  # softmax scaled by head_dim**-0.5
        x = x.reshape(*lead, self.num_heads, N, C // self.num_heads)  # (..., heads, N, C/heads)
        # Heads are merged with the head axis last, (..., N, C/heads, heads), as
        # NesT (ported from JAX) and the authors do; the pretrained proj expects it.
        return self.proj(x.movedim(-3, -1).reshape(*lead, N, C))


class TransformerLayer(nn.Module):
    """Pre-norm transformer layer applied to every block independently."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, N, C)
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class GlobalAttention(nn.Module):
    """The global branch shared by the interaction module and the hash head.

    Average-pools the map into one token per block, lets those tokens attend
    to each other, and spreads the result back over each block by bilinear
    upsampling: every position sees a summary of the whole image.

    Args:
        dim: channels C.
        num_tokens: blocks in the map, one token each after pooling.
        block_size: side b of a block: the pooling kernel and upsampling factor.
        num_heads: attention heads.
    """

    def __init__(self, dim: int, num_tokens: int, block_size: int, num_heads: int) -> None:
        super().__init__()
        self.block_size = block_size
        # Zero-initialised, as the authors do: tokens start position-agnostic.
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, dim))
        self.attn = Attention(dim, num_heads, qkv_bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        B, C, H, W = x.shape
        pooled = F.avg_pool2d(x, self.block_size)  # (B, C, H/b, W/b)
        grid = pooled.shape[-2:]
        # The authors read the channel-major pooled map as (B, T, C) with a plain
        # reshape, not a transpose: "token" t holds C consecutive values of the
        # flattened (C, H/b, W/b) memory. Their checkpoints depend on it.
        tokens = pooled.reshape(B, -1, C) + self.pos_embed  # (B, T, C)
        tokens = self.attn(tokens).transpose(1, 2).reshape(B, C, *grid)
        return F.interpolate(tokens, scale_factor=self.block_size, mode="bilinear", align_corners=False)  # (B, C, H, W)


class InteractionModule(nn.Module):
    """Joins two levels: local convolution + global attention, then downsampling.

    (B, C_in, H, W) -> (B, C_out, H/2, W/2). The 3x3 convolution carries local
    detail across block borders (which block attention cannot see); the
    global branch carries context between all blocks.
    """

    def __init__(self, in_dim: int, out_dim: int, num_tokens: int, block_size: int, num_heads: int, eps: float) -> None:
        super().__init__()
        self.local_conv = nn.Conv2d(in_dim, out_dim, kernel_size=3, padding=1)
        self.global_conv = nn.Conv2d(in_dim, out_dim, kernel_size=1, bias=False)
        self.global_attn = GlobalAttention(out_dim, num_tokens, block_size, num_heads)
        self.norm = LayerNorm2d(out_dim, eps=eps)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W)
        x = self.local_conv(x) + self.global_attn(self.global_conv(x))  # (B, C_out, H, W)
        return self.pool(self.norm(x))  # (B, C_out, H/2, W/2)


class Level(nn.Module):
    """One level: an optional interaction module, then block-local transformers."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        depth: int,
        num_blocks: int,
        block_size: int,
        drop_path: list[float],
        config: HybridHashConfig,
        prev_dim: int | None,
    ) -> None:
        super().__init__()
        self.block_size = block_size
        self.interaction = (
            nn.Identity()
            if prev_dim is None
            else InteractionModule(
                prev_dim,
                dim,
                # The interaction pools the *previous* map, which has 4x the blocks.
                num_tokens=4 * num_blocks,
                block_size=block_size,
                num_heads=config.interaction_heads,
                eps=config.layer_norm_eps,
            )
        )
        self.pos_embed = nn.Parameter(torch.zeros(1, num_blocks, block_size**2, dim))
        self.blocks = nn.Sequential(
            *(
                TransformerLayer(dim, num_heads, config.mlp_ratio, drop_path[j], config.layer_norm_eps)
                for j in range(depth)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_prev, H', W')
        x = self.interaction(x).permute(0, 2, 3, 1)  # (B, H, W, C)
        x = blockify(x, self.block_size) + self.pos_embed  # (B, T, N, C)
        x = deblockify(self.blocks(x), self.block_size)  # (B, H, W, C)
        return x.permute(0, 3, 1, 2)  # (B, C, H, W)


class HashHead(nn.Module):
    """(B, C, b, b) -> one value per bit (B, bits), before the final tanh.

    The same local + global design as the interaction module: a separable
    1x3 / 3x1 convolution and a global attention branch, then max-pooling,
    a 1x1 convolution to ``bits`` channels and global average pooling. The
    tanh after it is the model's ``activation``, which a hashing method may
    replace (HashNet's sharpening tanh, DPSH's linear output).
    """

    def __init__(self, dim: int, bits: int, block_size: int, num_heads: int) -> None:
        super().__init__()
        self.conv_1x3 = nn.Conv2d(dim, dim, kernel_size=(1, 3), padding=(0, 1))
        self.conv_3x1 = nn.Conv2d(dim, dim, kernel_size=(3, 1), padding=(1, 0))
        self.global_attn = GlobalAttention(dim, num_tokens=1, block_size=block_size, num_heads=num_heads)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.to_bits = nn.Conv2d(dim, bits, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, b, b)
        x = self.conv_3x1(self.conv_1x3(x)) + self.global_attn(x)
        x = self.to_bits(self.pool(x))  # (B, bits, b/2, b/2)
        return x.mean(dim=(2, 3))  # (B, bits)


class HashModel(nn.Module):
    """What every hashing network of hhlib is: features, a hash head, an activation and a quantiser.

    ``forward`` gives the relaxed codes that a loss scores,
    ``activation(hash_head(forward_features(x)))``; ``encode`` gives bits.
    A hashing method (:mod:`hhlib.methods`) may swap the head or the
    activation before training (docs/DESIGN.md, "Methods and backbones").
    """

    config: object  # a frozen dataclass with at least img_size, in_chans, bits and to_dict()
    hash_head: nn.Module
    activation: nn.Module
    quantizer: Quantizer

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check_input(self, x: torch.Tensor) -> None:
        c = self.config
        if x.ndim != 4 or tuple(x.shape[1:]) != (c.in_chans, c.img_size, c.img_size):
            raise ValueError(
                f"this {type(self).__name__} expects (B, {c.in_chans}, {c.img_size}, {c.img_size}) images, "
                f"got {tuple(x.shape)}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Relaxed codes (B, bits), the input of the loss; in (-1, 1) with the default tanh."""
        return self.activation(self.hash_head(self.forward_features(x)))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Binary codes in {-1, +1} (float): ``self.quantizer`` applied to the relaxed codes."""
        return self.quantizer(self(x))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()


class HybridHash(HashModel):
    """HybridHash: images (B, in_chans, S, S) -> relaxed hash codes (B, bits).

    Args:
        config: the hyper-parameters; ``HybridHashConfig.paper()`` by default.
    """

    def __init__(self, config: HybridHashConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or HybridHashConfig.paper()
        b, L = config.block_size, config.num_levels
        self.patch_embed = PatchEmbed(
            config.img_size, config.patch_size, config.in_chans, config.embed_dims[0], flatten=False
        )
        # Stochastic depth rises linearly over all layers of all levels.
        rates = torch.linspace(0, config.drop_path_rate, sum(config.depths)).tolist()
        levels, prev_dim, start = [], None, 0
        for i, (dim, heads, depth) in enumerate(zip(config.embed_dims, config.num_heads, config.depths)):
            levels.append(Level(dim, heads, depth, 4 ** (L - 1 - i), b, rates[start : start + depth], config, prev_dim))
            prev_dim, start = dim, start + depth
        self.levels = nn.Sequential(*levels)
        self.norm = LayerNorm2d(config.embed_dims[-1], eps=config.layer_norm_eps)
        self.hash_head = HashHead(config.embed_dims[-1], config.bits, b, config.interaction_heads)
        self.activation: nn.Module = nn.Tanh()
        # How relaxed codes become bits; not part of the network, saved beside it (hhlib.quantize).
        self.quantizer: Quantizer = SignQuantizer()
        self.apply(_init_weights)
        for level in self.levels:
            trunc_normal_(level.pos_embed, std=0.02)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, S, S) -> (B, C_last, b, b)."""
        self.check_input(x)
        x = self.patch_embed(x)  # (B, C0, G, G)
        x = self.levels(x)  # (B, C_last, b, b)
        return self.norm(x)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Position embeddings are exempt from weight decay (as in timm's NesT)."""
        return {name for name, _ in self.named_parameters() if name.endswith("pos_embed")}


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        trunc_normal_(module.weight, std=0.02, a=-2.0, b=2.0)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
