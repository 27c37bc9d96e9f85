"""Training loop shared by the DDP test's worker processes and its single-process reference."""
import os

import torch
import torch.distributed as dist
from torch import nn

import convt3d_ops

GLOBAL_BATCH = 4
STEPS = 200


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(2, 8, 3, padding=1), nn.ReLU(),
                         convt3d_ops.ConvTranspose3dReLUGroupNorm(8, 8, 2, stride=2, bias=True, num_groups=2),
                         nn.Conv3d(8, 1, 1))


def batch(step, device):
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(GLOBAL_BATCH, 2, 4, 4, 4, generator=g)
    target = torch.randn(GLOBAL_BATCH, 1, 8, 8, 8, generator=g)
    return x.to(device), target.to(device)


def train(model, device, rank=0, world=1):
    """SGD on the same global batches; each rank takes its contiguous shard. Returns the
    per-step losses of the global batch and the final parameters."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    shard = GLOBAL_BATCH // world
    losses = []
    for step in range(STEPS):
        x, target = batch(step, device)
        x, target = x[rank * shard:(rank + 1) * shard], target[rank * shard:(rank + 1) * shard]
        out = model(x)
        assert out.device == torch.device(device)
        loss = nn.functional.mse_loss(out, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        global_loss = loss.detach().clone()
        if world > 1:
            dist.all_reduce(global_loss)
            global_loss /= world
        losses.append(global_loss.item())
    params = [p.detach().cpu() for p in model.parameters()]
    return losses, params


def worker(rank, world, backend, port, result_path):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        device = f"cuda:{rank}" if backend == "nccl" else "cpu"
        if backend == "nccl":
            torch.cuda.set_device(rank)
            torch.backends.cudnn.allow_tf32 = False  # fp32-class arithmetic: the comparison is over 200 steps
        model = make_model().to(device)
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=[rank] if backend == "nccl" else None)
        losses, params = train(ddp, device, rank, world)
        if rank == 0:
            torch.save({"losses": losses, "params": params}, result_path)
        # both ranks done before either tears its gloo pairs down: a rank that destroyed its group while
        # the other was still saving died once in CI with "terminate called without an active exception"
        dist.barrier()
    finally:
        dist.destroy_process_group()
