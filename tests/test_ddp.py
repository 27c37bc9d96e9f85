"""DistributedDataParallel training with the fused op: 2 processes (gloo on the CPU; NCCL on
2 GPUs where present) against a single-process run on the same global batches."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

import ddp_training

# NVLink multicast off (workplace rule for multi-GPU machines; harmless elsewhere)
for _k, _v in (("NCCL_NVLS_ENABLE", "0"), ("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1"), ("NVSHMEM_DISABLE_NVLS", "1")):
    os.environ.setdefault(_k, _v)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BACKENDS = [
    pytest.param("gloo", id="gloo-cpu"),
    pytest.param("nccl", id="nccl-2gpu", marks=[pytest.mark.gpu, pytest.mark.skipif(
        not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")]),
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_ddp_matches_single_process(backend, tmp_path):
    result = tmp_path / "ddp.pt"
    mp.spawn(ddp_training.worker, args=(2, backend, _free_port(), str(result)), nprocs=2, join=True)
    ddp = torch.load(result)
    device = "cuda:0" if backend == "nccl" else "cpu"
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = backend != "nccl"
    try:
        ref_losses, ref_params = ddp_training.train(ddp_training.make_model().to(device), device)
    finally:
        torch.backends.cudnn.allow_tf32 = old
    assert len(ddp["losses"]) == ddp_training.STEPS
    assert ddp["losses"][-1] < ddp["losses"][0]  # it trained
    torch.testing.assert_close(torch.tensor(ddp["losses"]), torch.tensor(ref_losses), atol=1e-4, rtol=1e-3)
    for p, r in zip(ddp["params"], ref_params):
        torch.testing.assert_close(p, r, atol=1e-4, rtol=1e-3)
