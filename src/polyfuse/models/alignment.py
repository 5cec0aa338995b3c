"""Adapters into a shared space on top of frozen encoders (the LiT / BLIP-2 pattern)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn


class AlignmentModel(nn.Module):
    """Per-modality projection of pooled frozen features into one ``dim``-d space.

    Args:
        in_dims: modality -> width of its pooled encoder feature.
        dim: shared dimension.
        dropout: input dropout of every projection (strong regularisation matters:
            a few thousand pairs overfit a linear map within a few hundred steps).
        temperature: initial softmax temperature (the logit scale is learned).
    """

    def __init__(
        self,
        in_dims: Mapping[str, int],
        dim: int = 512,
        dropout: float = 0.5,
        temperature: float = 0.07,
    ) -> None:
        super().__init__()
        self.modalities = tuple(sorted(in_dims))
        self.dim = dim
        self.proj = nn.ModuleDict(
            {m: nn.Sequential(nn.Dropout(dropout), nn.Linear(d, dim)) for m, d in in_dims.items()}
        )
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / temperature)))
        # feature standardisation, fitted on training features (buffers: saved with weights)
        for m, d in in_dims.items():
            self.register_buffer(f"mean_{m}", torch.zeros(d))
            self.register_buffer(f"std_{m}", torch.ones(d))

    def fit_standardisation(self, features: Mapping[str, Tensor]) -> None:
        """Set each modality's feature mean/std from training features."""
        for m, x in features.items():
            getattr(self, f"mean_{m}").copy_(x.mean(0))
            getattr(self, f"std_{m}").copy_(x.std(0) + 1e-6)

    def embed(self, modality: str, pooled: Tensor) -> Tensor:
        """``(N, D_in)`` pooled features -> ``(N, dim)`` unit vectors in the shared space."""
        x = (pooled - getattr(self, f"mean_{modality}")) / getattr(self, f"std_{modality}")
        return nn.functional.normalize(self.proj[modality](x), dim=1)

    @property
    def scale(self) -> float:
        """Current logit scale (inverse temperature), capped at 100 as in CLIP."""
        return float(self.logit_scale.detach().exp().clamp(max=100.0))


class AlignmentEnsemble(nn.Module):
    """Several adapter pairs used as one: the embedding is the members' unit embeddings
    concatenated and scaled by ``1/sqrt(K)``, so the cosine of two embeddings is the mean
    of the members' cosines (and vector search over it ranks by that mean)."""

    def __init__(self, members: list[AlignmentModel]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.modalities = members[0].modalities
        self.dim = members[0].dim * len(members)

    def embed(self, modality: str, pooled: Tensor) -> Tensor:
        """``(N, D_in)`` pooled features -> ``(N, dim)`` unit vectors."""
        parts = [m.embed(modality, pooled) for m in self.members]  # type: ignore[operator]
        return torch.cat(parts, dim=1) / math.sqrt(len(parts))

    @property
    def scale(self) -> float:
        """Mean logit scale of the members."""
        scales = [m.scale for m in self.members if isinstance(m, AlignmentModel)]
        return sum(scales) / len(scales)


class AppliedAlignment(nn.Module):
    """The shared space of an exported alignment artifact, whose encoder graphs already
    apply the adapters (standardisation, projection, normalisation, the ensemble's
    concatenation): `embed` returns the encoder's pooled output unchanged, so an `Aligner`
    over ONNX encoders embeds, indexes and scores exactly as over the eager ones.

    Args:
        modalities: the aligned modality names.
        dim: the embedding size.
        scale: the source's logit scale (QB-norm's beta, zero-shot softmax).
    """

    def __init__(self, modalities: Sequence[str], dim: int, scale: float) -> None:
        super().__init__()
        self.modalities = tuple(sorted(modalities))
        self.dim = dim
        self._scale = float(scale)

    def embed(self, modality: str, pooled: Tensor) -> Tensor:
        """``(N, dim)`` embeddings (already in the shared space) -> the same."""
        return pooled

    @property
    def scale(self) -> float:
        """The source's logit scale."""
        return self._scale


#: What an `polyfuse.retrieval.pipeline.Aligner` embeds with: trained adapters, or the
#: adapters an exported graph already applied.
SharedSpace = AlignmentEnsemble | AppliedAlignment
