"""Named network configurations and the arithmetic of their shapes.

A preset is a `NetworkSpec`: the checkpoint card stores the spec's fields, so a model is rebuilt from
its card without guessing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from model.errors import ConfigError, UnknownPreset

Architecture = Literal["seed", "strided"]
DiscriminatorHead = Literal["flatten", "patch_mean"]


@dataclass(frozen=True)
class NetworkSpec:
    """Everything needed to build the reconstructor R and the discriminator D.

    Attributes:
        architecture: "seed" (the blog post's stride-1 R and 3x3 stride-2 D) or "strided" (the
            paper's official code: 5x5 stride-2 encoder/decoder and discriminator).
        input_size: Side of the square RGB input.
        width: Channels of the first conv layer; each further layer doubles it (capped at 8*width).
            The seed architecture is fixed at 64.
        r_depth: Down-sampling stages of the strided R (ignored by the seed R, which has four
            stride-1 stages).
        bn_eps: BatchNorm epsilon. The seed passes 0.8 as BatchNorm2d's second positional argument,
            which is eps, not momentum; `seed-fixed` uses PyTorch's default 1e-5.
        dropout: Dropout2d probability in D.
        d_head: How the strided D turns its feature map into one logit. "flatten" (the paper's):
            one linear unit over the whole 4x4 map, so every position has its own weights and D can
            learn *where* on a card text sits. "patch_mean": D stops at an 8x8 map, scores every
            cell with a 1x1 conv (each cell sees about 29x29 input pixels) and averages the cell
            logits, so it judges text-like texture wherever it is (layout-invariant by design).
        d_members: How many discriminators D is made of. 1 (what training produces) or more for an
            ensemble assembled from trained checkpoints (`model.ensemble`): D's logit is then the
            mean of its members' logits.
        member_sizes: For an ensemble whose members were trained at different input sizes, each
            member's own side, in member order; the first member's is also R's. The model's input
            is `input_size` (the largest), and a member trained smaller reads it shrunk to its own
            side (`model.networks.resize_input`). Empty: every member reads `input_size` as it is.
    """

    architecture: Architecture
    input_size: int = 64
    width: int = 64
    r_depth: int = 4
    bn_eps: float = 1e-5
    dropout: float = 0.25
    d_head: DiscriminatorHead = "flatten"
    d_members: int = 1
    member_sizes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        # A card stores the sizes as a JSON list; a tuple keeps the spec hashable and comparable.
        object.__setattr__(self, "member_sizes", tuple(self.member_sizes))
        if self.architecture not in ("seed", "strided"):
            raise ConfigError(f"unknown architecture {self.architecture!r}")
        if self.input_size < 16:
            raise ConfigError(f"input_size must be at least 16, got {self.input_size}")
        if self.d_head not in ("flatten", "patch_mean"):
            raise ConfigError(f"unknown d_head {self.d_head!r}; choose flatten or patch_mean")
        if self.architecture == "seed" and self.d_head != "flatten":
            raise ConfigError("the seed D is fixed (flatten); use a strided preset for patch_mean")
        if self.d_members < 1:
            raise ConfigError(f"d_members must be at least 1, got {self.d_members}")
        if self.member_sizes and (
            len(self.member_sizes) != self.d_members or max(self.member_sizes) != self.input_size
        ):
            raise ConfigError(
                f"member_sizes {list(self.member_sizes)} must list one side per member (d_members="
                f"{self.d_members}) and its largest must be input_size {self.input_size}"
            )
        if any(side < 16 for side in self.member_sizes):
            raise ConfigError(f"every member size must be at least 16, got {list(self.member_sizes)}")
        if self.width < 1:
            raise ConfigError(f"width must be positive, got {self.width}")
        if self.architecture == "seed" and self.width != 64:
            raise ConfigError(
                "the seed architecture has fixed widths 64..512; use a strided preset to vary width"
            )
        if self.architecture == "strided" and self.r_input_size % (2**self.r_depth) != 0:
            raise ConfigError(
                f"strided R needs its input size divisible by 2**r_depth={2**self.r_depth}, "
                f"got {self.r_input_size}"
            )

    @property
    def r_input_size(self) -> int:
        """The side R runs at: the first member's (it comes from that member's training)."""
        return self.member_sizes[0] if self.member_sizes else self.input_size

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form stored in the checkpoint card."""
        data = dataclasses.asdict(self)
        if not self.member_sizes:
            del data["member_sizes"]  # single-size models keep the card layout they always had
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkSpec:
        """Rebuild from `to_dict` output; unknown keys are an error, not silently dropped."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ConfigError(f"unknown network fields {sorted(unknown)}")
        return cls(**data)


PRESETS: dict[str, NetworkSpec] = {
    # The blog post's networks exactly, including BatchNorm2d(C, 0.8) == eps 0.8.
    "seed": NetworkSpec(architecture="seed", input_size=64, width=64, r_depth=4, bn_eps=0.8),
    # Same shapes with PyTorch's default eps, to measure what the eps=0.8 quirk does.
    "seed-fixed": NetworkSpec(architecture="seed", input_size=64, width=64, r_depth=4, bn_eps=1e-5),
    # The official code's strided style: cheap enough to train on a CPU.
    "strided": NetworkSpec(architecture="strided", input_size=64, width=32, r_depth=3),
    # Same at 128x128, where a line of text is still legible after resizing.
    "strided-128": NetworkSpec(architecture="strided", input_size=128, width=32, r_depth=4),
}


def get_preset(name: str, **overrides: Any) -> NetworkSpec:
    """Return the named preset, with any non-None `overrides` applied (e.g. width, input_size)."""
    try:
        spec = PRESETS[name]
    except KeyError as exc:
        raise UnknownPreset(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from exc
    changes = {key: value for key, value in overrides.items() if value is not None}
    return dataclasses.replace(spec, **changes) if changes else spec
