"""The two native architectures: PanopticDeepLabPR and PanopticBiFPNPR.

Both follow the output contract of empanada's released TorchScript files (docs/EMPANADA_FORMATS.md
section 3) and its module names (``encoder``, ``semantic_decoder``, ``instance_decoder``,
``semantic_head``, ``ins_center``, ``ins_xy``, ``semantic_pr``; BiFPN adds ``p2_resample``,
``semantic_fpn``, ``instance_fpn``). ``forward(x, render_steps=2, interpolate_ins=True)``:

- eval: ``sem_logits`` (N,C,H,W) refined by PointRend (H/4 * 2**render_steps), ``ctr_hmp``
  (N,1,H,W) and ``offsets`` (N,2,H,W) (1/4 resolution with ``interpolate_ins=False``);
- train: also ``sem_points`` (N,C,P) and ``point_coords`` (N,P,2); ``sem_logits`` is then the
  coarse prediction upsampled x4.
"""

from __future__ import annotations

from typing import Dict, List

import torch
from torch import nn

from empanada_desktop.backend.models.bifpn import BiFPN, BiFPNDecoder
from empanada_desktop.backend.models.blocks import PanopticDeepLabHead, Resample2d, upsample
from empanada_desktop.backend.models.deeplab_decoder import PanopticDeepLabDecoder
from empanada_desktop.backend.models.encoders import build_encoder
from empanada_desktop.backend.models.point_rend import PointRendSemSegHead


class _PanopticPR(nn.Module):
    """Shared heads and output contract; subclasses build the encoder and decoders."""

    padding_factor: int = 16

    def _build_heads(self, channels: int, num_classes: int, num_fc: int, train_num_points: int,
                     oversample_ratio: int, importance_sample_ratio: float, subdivision_steps: int,
                     subdivision_num_points: int) -> None:
        self.num_classes = num_classes
        self.semantic_head = PanopticDeepLabHead(channels, num_classes)
        self.ins_center = PanopticDeepLabHead(channels, 1)
        self.ins_xy = PanopticDeepLabHead(channels, 2)
        self.semantic_pr = PointRendSemSegHead(
            channels, num_classes, num_fc, train_num_points, oversample_ratio,
            importance_sample_ratio, subdivision_steps, subdivision_num_points,
        )

    def _heads(self, semantic_x: torch.Tensor, instance_x: torch.Tensor, render_steps: int,
               interpolate_ins: bool) -> Dict[str, torch.Tensor]:
        coarse = self.semantic_head(semantic_x)
        ctr_hmp = self.ins_center(instance_x)
        offsets = self.ins_xy(instance_x)
        out: Dict[str, torch.Tensor] = {}
        if self.training:
            point_logits, point_coords = self.semantic_pr.train_points(coarse, semantic_x)
            out["sem_logits"] = upsample(coarse, 4.0)
            out["sem_points"] = point_logits
            out["point_coords"] = point_coords
        else:
            out["sem_logits"] = self.semantic_pr.render(coarse, semantic_x, render_steps)
        if interpolate_ins:
            ctr_hmp = upsample(ctr_hmp, 4.0)
            offsets = upsample(offsets, 4.0)
        out["ctr_hmp"] = ctr_hmp
        out["offsets"] = offsets
        return out


class PanopticDeepLabPR(_PanopticPR):
    """Panoptic-DeepLab with a PointRend semantic head (MitoNet_v1: ResNet-50, padding 16).

    Defaults are MitoNet_v1's: stage 4 dilated to stride 16, 256 decoder channels, one low-level
    stage (stride 4) projected to 32 channels (16 in the instance decoder), ASPP rates 2/4/6.
    """

    padding_factor = 16

    def __init__(self, encoder: str = "resnet50", num_classes: int = 1, *, stage4_stride: int = 16,
                 decoder_channels: int = 256, low_level_stages: tuple[int, ...] = (1,),
                 low_level_channels_project: tuple[int, ...] = (32,),
                 atrous_rates: tuple[int, int, int] = (2, 4, 6), aspp_channels: int | None = None,
                 aspp_dropout: float = 0.5, ins_decoder: bool = True, ins_ratio: float = 0.5,
                 num_fc: int = 3, train_num_points: int = 1024, oversample_ratio: int = 3,
                 importance_sample_ratio: float = 0.75, subdivision_steps: int = 2,
                 subdivision_num_points: int = 8192, fused_encoder: bool = False) -> None:
        super().__init__()
        self.encoder_name = encoder
        self.encoder = build_encoder(encoder, output_stride=stage4_stride, fused=fused_encoder)
        widths = self.encoder.widths
        low_channels = [widths[stage - 1] for stage in low_level_stages]
        self.semantic_decoder = PanopticDeepLabDecoder(
            widths[-1], decoder_channels, list(low_level_stages), low_channels,
            list(low_level_channels_project), atrous_rates, aspp_channels, aspp_dropout,
        )
        self.instance_decoder = None
        if ins_decoder:
            self.instance_decoder = PanopticDeepLabDecoder(
                widths[-1], decoder_channels, list(low_level_stages), low_channels,
                [int(c * ins_ratio) for c in low_level_channels_project], atrous_rates,
                aspp_channels, aspp_dropout,
            )
        self._build_heads(decoder_channels, num_classes, num_fc, train_num_points, oversample_ratio,
                          importance_sample_ratio, subdivision_steps, subdivision_num_points)

    def forward(self, x: torch.Tensor, render_steps: int = 2, interpolate_ins: bool = True) -> Dict[str, torch.Tensor]:
        features: List[torch.Tensor] = self.encoder(x)
        semantic_x = self.semantic_decoder(features)
        instance_x = semantic_x
        if self.instance_decoder is not None:
            instance_x = self.instance_decoder(features)
        return self._heads(semantic_x, instance_x, render_steps, interpolate_ins)


class PanopticBiFPNPR(_PanopticPR):
    """Panoptic BiFPN with a PointRend semantic head (MitoNet_v1_mini: ResNet-50, padding 128).

    Defaults are MitoNet_v1_mini's: 3 BiFPN layers of 128 channels (this reproduces its 27.3 M
    parameters; empanada's training config shows 160), a separate instance BiFPN and decoder.
    """

    padding_factor = 128

    def __init__(self, encoder: str = "resnet50", num_classes: int = 1, *, fpn_dim: int = 128,
                 fpn_layers: int = 3, ins_decoder: bool = True, num_fc: int = 3,
                 train_num_points: int = 1024, oversample_ratio: int = 3,
                 importance_sample_ratio: float = 0.75, subdivision_steps: int = 2,
                 subdivision_num_points: int = 8192, fused_encoder: bool = False) -> None:
        super().__init__()
        self.encoder_name = encoder
        self.encoder = build_encoder(encoder, output_stride=32, fused=fused_encoder)
        widths = self.encoder.widths
        self.p2_resample = Resample2d(widths[0], fpn_dim)
        self.semantic_fpn = BiFPN(widths[1:], fpn_dim, fpn_layers)
        self.semantic_decoder = BiFPNDecoder(fpn_dim)
        self.instance_fpn = None
        self.instance_decoder = None
        if ins_decoder:
            self.instance_fpn = BiFPN(widths[1:], fpn_dim, fpn_layers)
            self.instance_decoder = BiFPNDecoder(fpn_dim)
        self._build_heads(fpn_dim, num_classes, num_fc, train_num_points, oversample_ratio,
                          importance_sample_ratio, subdivision_steps, subdivision_num_points)

    def forward(self, x: torch.Tensor, render_steps: int = 2, interpolate_ins: bool = True) -> Dict[str, torch.Tensor]:
        features: List[torch.Tensor] = self.encoder(x)
        p2 = self.p2_resample(features[1])
        semantic_x = self.semantic_decoder(_coarsest_first([p2] + self.semantic_fpn(features[2:])))
        instance_x = semantic_x
        if self.instance_fpn is not None and self.instance_decoder is not None:
            instance_x = self.instance_decoder(_coarsest_first([p2] + self.instance_fpn(features[2:])))
        return self._heads(semantic_x, instance_x, render_steps, interpolate_ins)


def _coarsest_first(pyramid: List[torch.Tensor]) -> List[torch.Tensor]:
    out: List[torch.Tensor] = []
    for i in range(len(pyramid) - 1, -1, -1):
        out.append(pyramid[i])
    return out
