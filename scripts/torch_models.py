"""The networks of ba-models written in PyTorch, shared by scripts/pytorch_reference.py (which
checks that our exported weights load into them with `strict=True` and give the same logits) and
bench/torch_reference.py (which times them beside ours)."""
import torch
from torch import nn


class BAModule(nn.Module):
    """Bridge Attention as in the BA-Net reference code."""

    def __init__(self, pre_channels, cur_channel, reduction=16):
        super().__init__()
        hidden = cur_channel // reduction
        self.pre_fusions = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, hidden, 1, bias=False), nn.BatchNorm2d(hidden))
            for c in pre_channels
        )
        self.cur_fusion = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(cur_channel, hidden, 1, bias=False), nn.BatchNorm2d(hidden)
        )
        self.generation = nn.Sequential(nn.ReLU(), nn.Conv2d(hidden, cur_channel, 1, bias=False), nn.Sigmoid())

    def forward(self, pre_layers, cur_layer):
        att = self.cur_fusion(cur_layer)
        for fusion, pre in zip(self.pre_fusions, pre_layers):
            att = att + fusion(pre)
        return self.generation(att)


GATES = {"alexnet": None, "se-alexnet": "se", "ba-alexnet": "ba"}


class AlexNet(nn.Module):
    """The notebook's AlexNet for 128x128 input. `gate="ba"` bridges conv1 and conv2 into a gate
    on conv3 (BA-AlexNet, the gate applied); `gate="se"` computes that gate from conv3 alone
    (SE-AlexNet). `AlexNet(gate=GATES[name])` builds the model of a ba-models name."""

    def __init__(self, num_classes=10, gate=None):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 48, 11, 4, 5), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(48, 128, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        )
        self.conv1 = nn.Conv2d(128, 192, 3, padding=1)
        self.conv2 = nn.Conv2d(192, 192, 3, padding=1)
        self.conv3 = nn.Conv2d(192, 128, 3, padding=1)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2)
        if gate == "ba":
            self.ba = BAModule([192, 192], 128, 16)
        elif gate == "se":
            self.se = BAModule([], 128, 16)
        elif gate is not None:
            raise ValueError(f"unknown gate {gate!r}")
        self.classifier = nn.Sequential(
            nn.Linear(128 * 3 * 3, 2048), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(2048, 2048), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(2048, num_classes),
        )

    def forward(self, x):
        x = self.features(x)
        x1 = self.relu(self.conv1(x))
        x2 = self.relu(self.conv2(x1))
        x3 = self.conv3(x2)
        if hasattr(self, "ba"):
            x3 = x3 * self.ba([x1, x2], x3)
        elif hasattr(self, "se"):
            x3 = x3 * self.se([], x3)
        x = self.maxpool(self.relu(x3))
        return self.classifier(torch.flatten(x, 1))
