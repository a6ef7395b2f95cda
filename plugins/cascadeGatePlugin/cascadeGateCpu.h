/*
 * edge_committee: the cascade gate on the CPU (plain C++, no CUDA, no TensorRT).
 *
 * The same semantics as the CUDA kernel and as edge_committee/cascade/reference.py (gate_step),
 * on host pointers. Used by the Python bindings (gate_step_cpu) and as the oracle of the C++ tests.
 */
#ifndef EDGE_COMMITTEE_CASCADE_GATE_CPU_H
#define EDGE_COMMITTEE_CASCADE_GATE_CPU_H

#include "cascadeGateCommon.h"

#include <cstdint>

namespace edge_committee
{
namespace gate
{

//!
//! \brief Run one stage of the gate on host memory, in place.
//!
//! Writes the exiting samples' label, confidence and exit stage, sets the flag of non-finite rows,
//! adds the stage's probabilities to probSum, and writes the survivors (stable order) and their count.
//!
//! \return nullptr on success, else a static message (the parameters are invalid; nothing was written).
//!
char const* cascadeGateCpu(GateParams const& params) noexcept;

//! \brief Convert an IEEE float16 bit pattern to float32 (exact; NaN payloads are kept quiet).
float halfBitsToFloat(uint16_t bits) noexcept;

} // namespace gate
} // namespace edge_committee

#endif // EDGE_COMMITTEE_CASCADE_GATE_CPU_H
