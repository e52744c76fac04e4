/*
 * The drivers layer: Jacobian blocks, the functional API and the
 * derivative checks, built on backward plans.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JAC_DRIVERS_H
#define JAC_DRIVERS_H

#include "autodiff/autodiff.h"

#endif /* JAC_DRIVERS_H */
