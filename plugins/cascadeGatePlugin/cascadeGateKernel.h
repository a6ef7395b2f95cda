/*
 * edge_committee: the cascade gate as one CUDA kernel launch per stage.
 *
 * No TensorRT header here: the kernel is shared by the TensorRT plugin and the Python bindings.
 *
 * Design (see README.md): one warp per active row does softmax + accumulate + confidence + exit
 * decision, holding the row in registers up to 1024 classes (float4 loads) and streaming longer rows;
 * a block owns a tile of kGATE_WARPS_PER_BLOCK consecutive rows; the survivors are compacted in
 * stable order by a single-pass decoupled look-back scan over the tiles (tiles are taken in launch
 * order from an atomic counter, so a tile only waits on tiles already running; a warp reads 32
 * predecessors per step). The last block to finish resets the workspace, so the next launch needs
 * no memset.
 */
#ifndef EDGE_COMMITTEE_CASCADE_GATE_KERNEL_H
#define EDGE_COMMITTEE_CASCADE_GATE_KERNEL_H

#include "cascadeGateCommon.h"

#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h>

namespace edge_committee
{
namespace gate
{

//! Warps (= rows) per thread block.
constexpr int32_t kGATE_WARPS_PER_BLOCK = 8;

//!
//! \brief Bytes of workspace a launch with up to `maxActive` rows needs.
//!
//! The workspace must be all zeros before the first launch (cascadeGateWorkspaceReset); every launch
//! that runs to completion leaves it all zeros again. It must not be shared by launches that can run
//! concurrently (e.g. on two streams).
//!
size_t cascadeGateWorkspaceSize(int32_t maxActive) noexcept;

//! \brief Zero `bytes` of workspace on `stream` (needed once, after allocation or after an aborted launch).
cudaError_t cascadeGateWorkspaceReset(void* workspace, size_t bytes, cudaStream_t stream) noexcept;

//!
//! \brief Enqueue one stage of the gate: exactly one kernel launch on `stream`.
//!
//! All pointers in `params` are device pointers. `survivorCount` is written on the device; read it
//! back (4 bytes) or use it as a data-dependent size.
//!
//! \return cudaSuccess, cudaErrorInvalidValue when the parameters are invalid or the workspace is too
//!         small (nothing is enqueued), or the launch error.
//!
cudaError_t cascadeGateEnqueue(
    GateParams const& params, void* workspace, size_t workspaceBytes, cudaStream_t stream) noexcept;

} // namespace gate
} // namespace edge_committee

#endif // EDGE_COMMITTEE_CASCADE_GATE_KERNEL_H
