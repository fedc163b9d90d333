"""PyTorch peer of `hcsc-bench training-step-parity`: the same 20 MoCo steps and 20 HCSC steps as the .NET run, from the
same initial weights, queue and input views, written independently from docs/method.md in the
style of the reference code (MoCo's builder: momentum update of the key encoder, single-device batch shuffle around a
split-BN key encoder, `_dequeue_and_enqueue`; HCSC's per-level instance and prototype selection; torch.optim.SGD with a
cosine learning rate set per epoch).

    /usr/bin/python3 benchmarks/python/train_step_parity.py WORK_DIR [--float64]

WORK_DIR holds what the .NET side wrote: parity-config.json (sizes, optimiser, schedule) and parity-inputs.pt
(`init/encoder_q.*`, `init/encoder_k.*`, `init/queue` [Q, d], `views1`/`views2` [S, B, 3, H, W], `indices` [S, B], the
hierarchy `hierarchy/{prototypes,assignments,concentrations,parents}/l`, and every random draw of the .NET run: the
key-batch permutations `{moco,hcsc}/permutations` [S, B], the ICSC masks `hcsc/icsc_masks` [S, L, B, Q] and the PCSC
masks `hcsc/pcsc_masks/l` [S, B, k_l]). The draws are replayed, not re-drawn; the selection probabilities are computed
here from the spec and the .NET masks are checked against them (z-score of the kept count per step and level).

Writes WORK_DIR/parity-pytorch.pt (`{moco,hcsc}/encoder_q.*`, `.../encoder_k.*`, `.../queue` [Q, d] after the last
step, and the same under `{moco,hcsc}/early/` after the first `early_steps` steps) and prints one JSON line last:
per-step losses and the selection check. With --float64 it also runs both in float64 (`moco64/...`, `hcsc64/...`,
losses `loss64`): the float32 runs' distance from it is the noise floor of float32 accumulation, against which the
.NET run's distance is judged.

Needs Debian's python3-torch with libopenblas0-pthread.
"""
import json, math, os, sys
from functools import partial

import torch, torch.nn as nn, torch.nn.functional as F

work = sys.argv[1]
with open(os.path.join(work, "parity-config.json")) as f:
    cfg = json.load(f)
torch.set_num_threads(cfg["threads"])
inputs = torch.load(os.path.join(work, "parity-inputs.pt"))
data = inputs
L = cfg["levels"]


class SplitBatchNorm(nn.BatchNorm2d):
    """BatchNorm over S sub-batches (sample n in split n mod S) with running statistics averaged over the splits: the
    one-device stand-in for MoCo's shuffled BN across GPUs (spec R5)."""

    def __init__(self, num_features, num_splits):
        super().__init__(num_features)
        self.num_splits = num_splits

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        n, c, h, w = x.shape
        s = self.num_splits
        mean, var = self.running_mean.repeat(s), self.running_var.repeat(s)
        out = F.batch_norm(x.view(n // s, c * s, h, w), mean, var, self.weight.repeat(s), self.bias.repeat(s),
                           True, self.momentum, self.eps).view(n, c, h, w)
        self.running_mean.copy_(mean.view(s, c).mean(0))
        self.running_var.copy_(var.view(s, c).mean(0))
        self.num_batches_tracked += 1
        return out


class BasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride, norm):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = norm(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = norm(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), norm(planes))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class SmallResNet18(nn.Module):
    """ResNet-18 for small images (3x3 stem, no max-pool), base width w, torchvision names, MoCo v2 MLP head as `fc`."""

    def __init__(self, width, dim, norm):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = norm(width)
        self.relu = nn.ReLU(inplace=True)
        planes, inplanes, layers = width, width, []
        for i in range(4):
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(inplanes, planes, stride, norm), BasicBlock(planes, planes, 1, norm)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            inplanes, planes = planes, planes * 2
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(inplanes, inplanes), nn.ReLU(), nn.Linear(inplanes, dim))

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def state(prefix):
    return {k[len(prefix):]: v for k, v in data.items() if k.startswith(prefix)}


class HCSC(nn.Module):
    """MoCo v2 with the HCSC objective when a hierarchy is given (docs/method.md §1, §5), else plain InfoNCE."""

    def __init__(self, hierarchy=None):
        super().__init__()
        self.K, self.m, self.T = data["init/queue"].shape[0], cfg["encoder_momentum"], cfg["temperature"]
        self.encoder_q = SmallResNet18(cfg["width"], cfg["dim"], nn.BatchNorm2d)
        self.encoder_k = SmallResNet18(cfg["width"], cfg["dim"], partial(SplitBatchNorm, num_splits=cfg["bn_splits"]))
        self.encoder_q.load_state_dict(state("init/encoder_q."))
        self.encoder_k.load_state_dict(state("init/encoder_k."))
        for param_k in self.encoder_k.parameters():
            param_k.requires_grad = False
        self.register_buffer("queue", data["init/queue"].t().clone())   # [d, K], columns are keys
        self.queue_ptr = 0
        self.hierarchy = hierarchy
        self.selection = []   # per step and level: (kind, kept, expected, variance, violations)

    @torch.no_grad()
    def _momentum_update_key_encoder(self):
        for param_q, param_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            param_k.data = param_k.data * self.m + param_q.data * (1.0 - self.m)

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys):
        batch_size = keys.shape[0]
        assert self.K % batch_size == 0
        self.queue[:, self.queue_ptr:self.queue_ptr + batch_size] = keys.T
        self.queue_ptr = (self.queue_ptr + batch_size) % self.K

    @torch.no_grad()
    def _batch_shuffle_single_gpu(self, x, idx_shuffle):
        # idx_shuffle is the permutation the .NET run drew for this step
        return x[idx_shuffle], torch.argsort(idx_shuffle)

    def forward(self, im_q, im_k, index, idx_shuffle, masks=None):
        q = F.normalize(self.encoder_q(im_q), dim=1)
        with torch.no_grad():
            self._momentum_update_key_encoder()
            im_k, idx_unshuffle = self._batch_shuffle_single_gpu(im_k, idx_shuffle)
            k = F.normalize(self.encoder_k(im_k), dim=1)
            k = k[idx_unshuffle]
        l_pos = torch.einsum("nc,nc->n", [q, k]).unsqueeze(-1)
        queue = self.queue.clone().detach()
        l_neg = torch.einsum("nc,ck->nk", [q, queue])
        target = torch.zeros(q.shape[0], dtype=torch.long)
        if self.hierarchy is None:
            loss = F.cross_entropy(torch.cat([l_pos, l_neg], dim=1) / self.T, target)
        else:
            self.check_selection(queue, index, *masks)
            loss = self.selective_loss(q, l_pos, l_neg, index, *masks)
        self._dequeue_and_enqueue(k)
        return loss

    def selective_loss(self, q, l_pos, l_neg, index, icsc_masks, pcsc_masks):
        """Σ_l ICSC_l + (1/L) Σ_l PCSC_l; unselected negatives keep a logit of 0 (R1); candidate prototypes are all of
        the level's prototypes but the batch's positives (R3 fixed)."""
        target = torch.zeros(q.shape[0], dtype=torch.long)
        loss_icsc, loss_pcsc = 0.0, []
        for l, (prototypes, im2cluster, density, _) in enumerate(self.hierarchy):
            pos_proto_id = im2cluster[index]
            # ICSC: queue negatives kept by the Bernoulli mask
            logits = torch.cat([l_pos, l_neg * icsc_masks[l]], dim=1) / self.T
            loss_icsc = loss_icsc + F.cross_entropy(logits, target)
            # PCSC: positive prototype against the (selected) candidate prototypes, each at its own temperature
            neg_proto_id = sorted(set(range(prototypes.shape[0])) - set(pos_proto_id.tolist()))
            neg_proto_id = torch.tensor(neg_proto_id, dtype=torch.long)
            pos_logits = (q * prototypes[pos_proto_id]).sum(1, keepdim=True) / density[pos_proto_id].unsqueeze(1)
            neg_logits = q @ prototypes[neg_proto_id].T / density[neg_proto_id]
            if l < L - 1:
                neg_logits = neg_logits * pcsc_masks[l][:, neg_proto_id]
            loss_pcsc.append(F.cross_entropy(torch.cat([pos_logits, neg_logits], dim=1), target))
        return loss_icsc + sum(loss_pcsc) / L

    @torch.no_grad()
    def check_selection(self, queue, index, icsc_masks, pcsc_masks):
        """The spec's acceptance probabilities, against the masks the .NET run drew."""
        for l, (prototypes, im2cluster, density, parents) in enumerate(self.hierarchy):
            y = im2cluster[index]
            p = torch.softmax(queue.T.double() @ prototypes.double().T / density.double().clamp(min=1e-3), dim=1)  # [Q, k]
            accept = (1 - p[:, y].T).clamp(0, 0.999)                                                                # [B, Q]
            self.selection.append(("icsc", *self.tally(icsc_masks[l], accept), 0))
            candidates = torch.ones(prototypes.shape[0], dtype=torch.bool)
            candidates[y] = False
            mask = pcsc_masks[l]
            violations = int((mask & ~candidates).sum())
            if l == L - 1:   # the top level selects nothing: every candidate is used
                violations += int((mask != candidates.expand_as(mask)).sum())
                self.selection.append(("pcsc-top", 0.0, 0.0, 0.0, 0, violations))
                continue
            up_protos, _, up_density, _ = self.hierarchy[l + 1]
            phi = self.T * up_density.double() / up_density.double().mean()
            sim = prototypes.double() @ up_protos.double().T                                                        # [k_l, k_l+1]
            prob = torch.softmax(sim / phi, dim=1)
            accept = (1 - prob[:, parents[y]].T).clamp(1e-4, 0.999)                                                # [B, k_l]
            self.selection.append(("pcsc", *self.tally(mask[:, candidates], accept[:, candidates]), violations))

    @staticmethod
    def tally(mask, accept):
        return float(mask.sum()), float(accept.sum()), float((accept * (1 - accept)).sum()), mask.numel()


def adjust_learning_rate(optimizer, epoch):
    lr = cfg["lr"] * 0.5 * (1.0 + math.cos(math.pi * epoch / cfg["epochs"]))
    for param_group in optimizer.param_groups:
        param_group["lr"] = lr


def train(run, dtype):
    global data
    data = {k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}
    hierarchy = None
    if run == "hcsc":
        hierarchy = [(data[f"hierarchy/prototypes/{l}"], data[f"hierarchy/assignments/{l}"],
                      data[f"hierarchy/concentrations/{l}"], data.get(f"hierarchy/parents/{l}")) for l in range(L)]
    model = HCSC(hierarchy).to(dtype)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])
    losses, states, name = [], {}, run if dtype == torch.float32 else run + "64"
    for epoch in range(cfg["epochs"]):
        adjust_learning_rate(optimizer, epoch)
        for i in range(cfg["steps_per_epoch"]):
            s = epoch * cfg["steps_per_epoch"] + i
            if s >= cfg["steps"]:
                break
            masks = None
            if hierarchy is not None:
                masks = (data["hcsc/icsc_masks"][s].bool(), [data[f"hcsc/pcsc_masks/{l}"][s].bool() for l in range(L)])
            loss = model(data["views1"][s], data["views2"][s], data["indices"][s], data[f"{run}/permutations"][s], masks)
            losses.append(loss.item())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if s + 1 == cfg["early_steps"]:
                states.update(snapshot(model, f"{name}/early"))
    states.update(snapshot(model, name))
    return losses, states, model.selection


def snapshot(model, prefix):
    # float64 results are stored rounded to float32 (3e-8 relative)
    state = {f"{prefix}/{k}": (v.float() if v.is_floating_point() else v).detach().clone().contiguous()
             for k, v in model.state_dict().items() if k != "queue"}
    state[f"{prefix}/queue"] = model.queue.T.float().contiguous().clone()
    return state


result, weights = {"impl": f"pytorch {torch.__version__}"}, {}
for run in ("moco", "hcsc"):
    losses, final, selection = train(run, torch.float32)
    weights.update(final)
    result[run] = {"loss": losses}
    if "--float64" in sys.argv[2:]:
        losses64, final64, _ = train(run, torch.float64)
        weights.update(final64)
        result[run]["loss64"] = losses64
    if selection:
        summary = {"mask_violations": sum(s[5] for s in selection)}
        for kind in ("icsc", "pcsc"):
            rows = [s for s in selection if s[0] == kind]
            summary[f"{kind}_max_abs_z"] = max(abs(kept - expected) / math.sqrt(max(var, 1e-12)) for _, kept, expected, var, _, _ in rows)
            summary[f"{kind}_kept"] = sum(r[1] for r in rows) / sum(r[4] for r in rows)
            summary[f"{kind}_expected"] = sum(r[2] for r in rows) / sum(r[4] for r in rows)
        result[run]["selection"] = summary
torch.save(weights, os.path.join(work, "parity-pytorch.pt"))
print(json.dumps(result))
