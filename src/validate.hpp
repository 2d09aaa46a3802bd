// Input validation (the full rule list heads src/validate.cpp): the one place that checks the public arguments and turns
// them into FwdParams / BwdParams. Every rule throws vflash::Error(Status::invalid_argument
// or Status::unsupported) naming the argument and the rule; tests/test_validate.cpp
// holds a failing input per rule. Kernels trust what comes out of here.
#pragma once

#include "params.hpp"
#include "vflash/vflash.hpp"

namespace vflash {

FwdParams validate_varlen(const vflash_varlen_args& args);
FwdParams validate_dense(const vflash_dense_args& args);
BwdParams validate_varlen_bwd(const vflash_varlen_bwd_args& args);

// Throw Error{status, argument, "<argument>: <rule>"}.
[[noreturn]] void fail(Status status, const std::string& argument, const std::string& rule);

}  // namespace vflash
