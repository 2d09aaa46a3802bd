// The one place that knows compute capabilities and CUDA compilation targets.
// No other file compares capability numbers: ask this module.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace vflash::arch {

struct Capability {
  int major = 0;
  int minor = 0;
  friend bool operator==(const Capability&, const Capability&) = default;
};

// How code built for a target may be loaded.
enum class TargetKind {
  generic,          // sm_XY:  machine code, runs on X.y for y >= Y
  arch_specific,    // sm_XYa: machine code for exactly X.Y
  family_specific,  // sm_XYf: machine code for the family X, minor >= Y
  ptx,              // compute_XY[a|f]: PTX, JIT-compiled by the driver
};

struct Target {
  Capability cc;
  TargetKind kind = TargetKind::generic;
  // For PTX only: the PTX was built for an 'a' or 'f' virtual arch, which
  // restricts where the driver may JIT it the same way as machine code.
  TargetKind ptx_flavor = TargetKind::generic;
  friend bool operator==(const Target&, const Target&) = default;
};

std::optional<Capability> parse_capability(std::string_view text);  // "10.3", "103", "sm_103"
std::optional<Target> parse_target(std::string_view text);  // "sm_90a", "compute_100f", "sm_80"
std::vector<Target> parse_target_list(std::string_view semicolon_separated);  // skips unparsable items
std::string to_string(Capability cc);  // "10.3"
std::string to_string(const Target& t);  // "sm_103a", "compute_90"

// Does code built for `t` run on a device of capability `cc`?
bool runs_on(const Target& t, Capability cc);
// Why or why not, in words (for doctor).
std::string explain_runs_on(const Target& t, Capability cc);
// The target among `targets` whose code a device of capability `cc` would
// load: machine code before PTX, the most specific and newest first. Empty
// when none runs on `cc`.
std::optional<Target> preferred_target(std::span<const Target> targets, Capability cc);
// Family name of a capability, e.g. "Blackwell datacenter (10.3)".
std::string family_name(Capability cc);
// Capabilities the project claims to serve, and those it knows of (7.5 .. 12.1).
std::vector<Capability> known_capabilities();

}  // namespace vflash::arch
