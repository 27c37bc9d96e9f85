// The portable tensor-core convolution: an implicit GEMM that gathers its A
// operand from packed activations (pack.h), for sm_80 and newer.
//
// One kernel serves both directions we need:
//   out[n, co, o] = act( bias[co] + sum_{ci, t} src[n, ci, s(o, t)] * W[co, t, ci] )
// where, per spatial dimension, src_num = o * out_mul + base + t * tap_step and the
// tap contributes only when src_num is divisible by in_div (s = src_num / in_div):
//   transposed conv (forward):        out_mul 1, base  pad, tap_step -dil, in_div stride
//   direct conv (input gradient):     out_mul stride, base -pad, tap_step dil, in_div 1
// Output positions are split into in_div^3 phases (o mod in_div), so that every
// tap of a phase either always or never contributes: no multiply-by-zero work.
#pragma once

#include "common/math_mode.cuh"

namespace convt3d {

struct GatherConvParams {
  const void* src;   // packed [N][S_in][G][Cp]
  const void* wpk;   // packed [G][rows][T][Cp]
  const void* bias;  // [G * rows] or nullptr
  void* out;         // element (n, c, d, h, w) at n*os[0] + c*os[1] + d*os[2] + h*os[3] + w*os[4]
  int64_t os[5];
  int N, G, Cp, rows, T;
  int in_dims[3], out_dims[3], k[3];
  int out_mul[3], base[3], tap_step[3], in_div[3];
  int relu;
};

void launch_gather_conv(const GatherConvParams& p, MathMode mode, cudaStream_t stream);

}  // namespace convt3d
