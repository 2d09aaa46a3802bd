// `vflash doctor`: what this binary holds, what the device is, and which
// kernel representative calls would run (and why every other one would not).
#pragma once

#include <string>
#include <vector>

#include "params.hpp"

namespace vflash {

// A call shape typical of vflash's users, built as FwdParams without memory
// (dispatch only reads shapes and features).
struct RepresentativeCall {
  std::string name;
  std::string description;
  FwdParams params;
};
std::vector<RepresentativeCall> representative_calls(int device_ordinal);

// The report for the current device (or the pretended capability).
std::string doctor_report_text();
std::string doctor_report_json();

// `text` as a JSON string literal, quotes included.
std::string json_quote(std::string_view text);

}  // namespace vflash
