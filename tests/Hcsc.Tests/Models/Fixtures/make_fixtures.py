#!/usr/bin/env python3
"""Makes the PyTorch interop fixtures of tests/Hcsc.Tests/Models (run from anywhere, with Debian's python3-torch):

    apt-get install -y python3-torch python3-torchvision libopenblas0-pthread
    /usr/bin/python3 tests/Hcsc.Tests/Models/Fixtures/make_fixtures.py [--check-export]

Each fixture is a small torchvision ResNet (torchvision's own blocks, at a small base width) with randomised
weights and BN statistics, saved with torch.save, and beside it the inputs and the outputs PyTorch computed.
The .NET tests load the weights and must reproduce the outputs to 1e-4.

--check-export additionally runs the .NET export test with HCSC_EXPORT_DIR set and checks here that what .NET
exported loads into torchvision (strict) and gives the outputs .NET computed; the result goes to export_check.txt.
"""
import json, os, subprocess, sys, tempfile
import torch, torch.nn as nn, torchvision
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
torch.manual_seed(20220201)


def tiny_resnet(block, layers, width, in_channels, small_stem, num_classes):
    """torchvision's ResNet with base width `width` instead of 64 (same modules, same names)."""
    m = ResNet(block, layers, num_classes=num_classes)
    m.inplanes = width
    if small_stem:
        m.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        m.maxpool = nn.Identity()
    else:
        m.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
    m.bn1 = nn.BatchNorm2d(width)
    m.layer1 = m._make_layer(block, width, layers[0])
    m.layer2 = m._make_layer(block, width * 2, layers[1], stride=2)
    m.layer3 = m._make_layer(block, width * 4, layers[2], stride=2)
    m.layer4 = m._make_layer(block, width * 8, layers[3], stride=2)
    m.fc = nn.Linear(width * 8 * block.expansion, num_classes)
    randomise(m)
    return m


def randomise(m):
    """Non-trivial weights and BN statistics, so eval-mode outputs test every tensor."""
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5); mod.bias.normal_(0, 0.1)
                mod.running_mean.normal_(0, 0.1); mod.running_var.uniform_(0.5, 1.5)
                mod.num_batches_tracked.fill_(7)


def features(m, x):
    x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
    return torch.flatten(m.avgpool(x), 1)


def outputs(m, x):
    import copy
    m.eval()
    with torch.no_grad():
        out = {"input": x, "features": features(m, x), "logits": m(x)}
        train_copy = copy.deepcopy(m).train()
        out["logits_train"] = train_copy(x)   # batch statistics
    return out


def save(obj, name):
    path = os.path.join(HERE, name)
    torch.save(obj, path)
    print(f"{name}: {os.path.getsize(path)} bytes")


def make():
    # 1. torchvision .pth, ResNet-18 at width 4, small-image stem, RGB 16x16.
    r18 = tiny_resnet(BasicBlock, [2, 2, 2, 2], 4, 3, True, 10)
    save(r18.state_dict(), "resnet18_w4_small.pth")
    save(outputs(r18, torch.randn(4, 3, 16, 16)), "resnet18_w4_small.expected.pth")

    # 2. torchvision .pth, ResNet-50 at width 4, ImageNet stem, grey 64x64.
    r50 = tiny_resnet(Bottleneck, [3, 4, 6, 3], 4, 1, False, 7)
    save(r50.state_dict(), "resnet50_w4_grey.pth")
    save(outputs(r50, torch.randn(2, 1, 64, 64)), "resnet50_w4_grey.expected.pth")

    # 3. A MoCo / HCSC pretraining checkpoint (.pth.tar): DataParallel 'module.' prefix, query and key encoders with
    #    the MLP head as fc, the queue, and an SGD state, as main_moco.py / HCSC's main saves it.
    enc_q = tiny_resnet(BasicBlock, [2, 2, 2, 2], 4, 3, True, 16)
    enc_q.fc = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), enc_q.fc)
    enc_k = tiny_resnet(BasicBlock, [2, 2, 2, 2], 4, 3, True, 16)
    enc_k.fc = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), enc_k.fc)
    moco = nn.Module(); moco.encoder_q = enc_q; moco.encoder_k = enc_k
    moco.register_buffer("queue", nn.functional.normalize(torch.randn(16, 64), dim=0))
    moco.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
    opt = torch.optim.SGD(enc_q.parameters(), lr=0.03, momentum=0.9, weight_decay=1e-4)
    enc_q(torch.randn(2, 3, 16, 16)).sum().backward(); opt.step()
    randomise(enc_q)
    state = {"module." + k: v for k, v in moco.state_dict().items()}
    save({"epoch": 5, "arch": "resnet18", "state_dict": state, "optimizer": opt.state_dict()}, "moco_resnet18_w4.pth.tar")
    x = torch.randn(2, 3, 16, 16)
    enc_q.eval()
    with torch.no_grad():
        save({"input": x, "features": features(enc_q, x)}, "moco_resnet18_w4.expected.pth")

    # 4. A state dict in the legacy (pre-1.6, non-zip) torch.save format, which must be refused with a clear message.
    path = os.path.join(HERE, "legacy_format.pth")
    torch.save({"w": torch.ones(2)}, path, _use_new_zipfile_serialization=False)
    print(f"legacy_format.pth: {os.path.getsize(path)} bytes")

    # 5. The keys and shapes of torchvision's full ResNet-50 state dict (what an export must produce).
    full = torchvision.models.resnet50()
    keys = {k: list(v.shape) for k, v in full.state_dict().items()}
    with open(os.path.join(HERE, "torchvision_resnet50_keys.json"), "w") as f:
        json.dump(keys, f, indent=0)
    print(f"torchvision_resnet50_keys.json: {len(keys)} keys, {sum(p.numel() for p in full.parameters())} parameters")


def check_export():
    """Runs the .NET export test, then loads what it wrote into torchvision and compares outputs."""
    out = tempfile.mkdtemp(prefix="hcsc-export-")
    env = dict(os.environ, HCSC_EXPORT_DIR=out)
    subprocess.run(["dotnet", "test", "-c", "Release", "--filter", "FullyQualifiedName~ExportForPyTorch"],
                   cwd=REPO, env=env, check=True)
    lines = []
    # Full-size ResNet-50, ImageNet stem: torchvision.models.resnet50().load_state_dict must accept it as it is.
    m = torchvision.models.resnet50()
    m.load_state_dict(torch.load(os.path.join(out, "resnet50_export.pth")))  # strict
    m.eval()
    ref = torch.load(os.path.join(out, "resnet50_export.outputs.pth"))
    with torch.no_grad():
        diff = (features(m, ref["input"]) - ref["features"]).abs().max().item()
    lines.append(f"resnet50 (full size) export: torchvision.models.resnet50().load_state_dict strict OK; max |features diff| = {diff:.3g}")
    assert diff < 1e-4, diff
    # Tiny small-stem ResNet-18 exported from an HCSC model (projection head replaced by a fresh 10-class fc).
    t = tiny_resnet(BasicBlock, [2, 2, 2, 2], 4, 3, True, 10)
    t.load_state_dict(torch.load(os.path.join(out, "resnet18_w4_small_export.pth")))
    t.eval()
    ref = torch.load(os.path.join(out, "resnet18_w4_small_export.outputs.pth"))
    with torch.no_grad():
        diff = (features(t, ref["input"]) - ref["features"]).abs().max().item()
    lines.append(f"resnet18 width 4 small-stem export from HcscModel: load_state_dict strict OK; max |features diff| = {diff:.3g}")
    assert diff < 1e-4, diff
    text = f"torch {torch.__version__}, torchvision {torchvision.__version__}\n" + "\n".join(lines) + "\n"
    with open(os.path.join(HERE, "export_check.txt"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    make()
    if "--check-export" in sys.argv:
        check_export()
