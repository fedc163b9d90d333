"""PyTorch peer of `hcsc-bench models-train-step`: one MoCo/HCSC training step on CPU (EMA of the key encoder,
key forward without gradient, query forward + backward, InfoNCE against a queue, SGD with momentum and weight decay).

    /usr/bin/python3 benchmarks/python/models_train_step.py ARCH SIZE BATCH STEPS [THREADS] [serve]
    ARCH: resnet18 | resnet50;  SIZE: 32 uses the small-image stem (3x3 conv, no max-pool), else the ImageNet stem.

With `serve` it does one warm-up step, prints `ready`, then runs one step per `step` line read from stdin and
prints its milliseconds, until `quit` (so the .NET benchmark can alternate single steps with it on a shared machine).

Needs Debian's python3-torch + python3-torchvision with libopenblas0-pthread. Prints one JSON line last.
"""
import json, sys, time
import torch, torch.nn as nn, torch.nn.functional as F, torchvision

arch, size, batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
threads = int(sys.argv[5]) if len(sys.argv) > 5 else 2
torch.set_num_threads(threads)
torch.manual_seed(0)
small = size <= 64


def net():
    m = getattr(torchvision.models, arch)(num_classes=128)
    if small:
        m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        m.maxpool = nn.Identity()
    dim_mlp = m.fc.weight.shape[1]
    m.fc = nn.Sequential(nn.Linear(dim_mlp, dim_mlp), nn.ReLU(), m.fc)
    return m


q_enc, k_enc = net(), net()
k_enc.load_state_dict(q_enc.state_dict())
for p in k_enc.parameters():
    p.requires_grad = False
queue = F.normalize(torch.randn(4096, 128), dim=1)
opt = torch.optim.SGD(q_enc.parameters(), lr=0.03, momentum=0.9, weight_decay=1e-4)
x1, x2 = torch.randn(batch, 3, size, size), torch.randn(batch, 3, size, size)


def step():
    global queue
    with torch.no_grad():
        for pq, pk in zip(q_enc.parameters(), k_enc.parameters()):
            pk.mul_(0.999).add_(pq.detach(), alpha=0.001)
        k = F.normalize(k_enc(x2), dim=1)
    q = F.normalize(q_enc(x1), dim=1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.t()], 1) / 0.2
    loss = F.cross_entropy(logits, torch.zeros(batch, dtype=torch.long))
    opt.zero_grad()
    loss.backward()
    opt.step()
    queue = torch.cat([k, queue[:-batch]])


def peak_rss_mib():
    # VmHWM of this process image (ru_maxrss would include the parent's peak, as it survives fork + exec).
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


built_rss = rss_mib()
step()
if len(sys.argv) > 6 and sys.argv[6] == "serve":
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            break
        t = time.perf_counter()
        step()
        print(f"{(time.perf_counter() - t) * 1000:.3f}", flush=True)
    print(json.dumps({"impl": f"pytorch {torch.__version__}", "peak_rss_mib": peak_rss_mib(), "built_rss_mib": built_rss}), flush=True)
    sys.exit(0)
t = time.perf_counter()
for _ in range(steps):
    step()
dt = (time.perf_counter() - t) / steps
print(json.dumps({"impl": f"pytorch {torch.__version__}", "arch": arch, "size": size, "batch": batch,
                  "ms_per_step": dt * 1000, "images_per_s": batch / dt,
                  "peak_rss_mib": peak_rss_mib(), "built_rss_mib": built_rss}))
