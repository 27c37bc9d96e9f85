// The transposed-conv forward (+ReLU) as a reusable step, shared by the ops
// conv_transpose3d_relu and fused_forward: picks the kernel path for the device
// and the problem, packs the operands and runs it.
#pragma once

#include <functional>

#include "common/conv_args.h"
#include "common/math_mode.cuh"
#include "group_norm.h"

namespace convt3d {

enum class ForwardPath { kPortable, kHopper };

// The forward's kernel path (the Hopper kernel writes NCDHW; a channels-last output is copied from it).
ForwardPath choose_forward_path(const ConvTransposeGeometry& geo, MathMode mode, int device_index);
const char* forward_path_name(ForwardPath path);

// The forward's output tensors, created by allocate() where the path first needs them: on the
// Hopper path after the pack kernel's launch, so that the host's allocations (3-5 us each in a profiled
// call on the lent GPU machine's host) overlap the pack instead of delaying the first kernel (NOTES v30). allocate()
// creates *out, (N, Cout, Do, Ho, Wo), channels-last where channels_last, else contiguous, and with
// the fused forward the GroupNorm's outputs (GroupNormRequest's tensors).
struct ForwardOutputs {
  Tensor* out;
  bool channels_last;
  std::function<void()> allocate;
};

// *outputs.out receives relu(conv_transpose(x) + bias). The temporaries are slices of ws,
// allocated here with the slices the caller reserved before. With stats_groups > 0, a path that
// reduces the GroupNorm statistics in its epilogue returns them (the others return nothing, and the
// caller reduces out); with norm too, it may apply the GroupNorm as well (ForwardStats::normalized).
std::optional<ForwardStats> conv_transpose_relu_forward(const ConvTransposeGeometry& geo, const Tensor& x,
                                                        const Tensor& weight, const std::optional<Tensor>& bias,
                                                        const ForwardOutputs& outputs, MathMode mode,
                                                        cudaStream_t stream, Workspace& ws, int64_t stats_groups = 0,
                                                        const GroupNormRequest* norm = nullptr);

}  // namespace convt3d
