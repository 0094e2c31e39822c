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


class SELayer(nn.Module):
    """Squeeze-and-excitation (Hu et al.): channel means, Linear C -> C/r (bias), ReLU,
    Linear C/r -> C (bias), sigmoid."""

    def __init__(self, channels, reduction=16):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction), nn.ReLU(),
            nn.Linear(channels // reduction, channels), nn.Sigmoid(),
        )

    def forward(self, x):
        return self.fc(x.mean((2, 3)))[:, :, None, None]


class BasicBlock(nn.Module):
    """He et al.'s basic block; `gate` "se" or "ba" multiplies bn2's output before the residual
    addition (BA: conv1's output after BN and ReLU bridged into the gate, as the BA-Net code's
    BABasicBlock). A shortcut that changes shape is a strided 1x1 convolution with a BN."""

    def __init__(self, inplanes, planes, stride=1, gate=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.gate = gate
        if gate == "se":
            self.se = SELayer(planes, 16)
        elif gate == "ba":
            self.ba = BAModule([planes], planes, 16)
        elif gate is not None:
            raise ValueError(f"unknown gate {gate!r}")
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        first = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(first))
        if self.gate == "se":
            out = out * self.se(out)
        elif self.gate == "ba":
            out = out * self.ba([first], out)
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class CifarResNet(nn.Module):
    """The CIFAR ResNets of He et al. 2016 (depth 6n + 2: 16/32/64 channels, n blocks each),
    initialised as torchvision's ResNet (Kaiming normal, fan-out, for the convolutions)."""

    def __init__(self, depth, gate=None, num_classes=10):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        inplanes = 16
        for i, planes in enumerate([16, 32, 64]):
            blocks = []
            for b in range(n):
                stride = 2 if i > 0 and b == 0 else 1
                blocks.append(BasicBlock(inplanes, planes, stride, gate))
                inplanes = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(x.mean((2, 3)), 1))


def resnet_of(name):
    """The ResNet of a ba-models name: resnet20, se-resnet56, ba-resnet110, ..."""
    gate = {"se": "se", "ba": "ba"}.get(name.split("-")[0])
    return CifarResNet(int(name.rsplit("resnet", 1)[1]), gate)
