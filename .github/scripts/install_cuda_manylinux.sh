#!/usr/bin/env bash
# cibuildwheel before-all (manylinux_2_28, x86_64): the CUDA 13.0 compiler and runtime headers.
# Only nvcc, the runtime (cudart) and its headers are needed; the wheel links nothing else.
set -euxo pipefail
dnf install -y dnf-plugins-core
dnf config-manager --add-repo https://developer.download.nvidia.com/compute/cuda/repos/rhel8/x86_64/cuda-rhel8.repo
dnf install -y cuda-nvcc-13-0 cuda-cudart-devel-13-0 cuda-driver-devel-13-0 cuda-crt-13-0
ln -sfn /usr/local/cuda-13.0 /usr/local/cuda
/usr/local/cuda/bin/nvcc --version
