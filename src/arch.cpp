// The architecture model: the only file that compares compute-capability
// numbers. Rules follow NVIDIA's compatibility model for CUDA binaries:
//   generic machine code sm_XY   -> same major, minor >= Y
//   arch-specific sm_XYa         -> exactly X.Y
//   family-specific sm_XYf       -> same major (family), minor >= Y
//   PTX compute_XY               -> any capability >= X.Y (driver JIT)
//   PTX compute_XYa / XYf        -> restricted like the matching machine code
#include "arch.hpp"

#include <charconv>

namespace vflash::arch {
namespace {

// Majors have at most two digits and minors one: "sm_1000000000" is garbage,
// not capability 100000000.0.
constexpr int kMaxMajor = 99;

bool precedes(Capability a, Capability b) {
  return a.major < b.major || (a.major == b.major && a.minor < b.minor);
}

std::optional<int> parse_int(std::string_view digits) {
  if (digits.empty() || digits.size() > 3) return std::nullopt;
  for (char c : digits)
    if (c < '0' || c > '9') return std::nullopt;
  int value = 0;
  std::from_chars(digits.data(), digits.data() + digits.size(), value);
  return value;
}

// "103" -> 10.3, "90" -> 9.0: the last digit is the minor version.
std::optional<Capability> parse_packed(std::string_view digits) {
  if (digits.size() < 2 || digits.size() > 3 || digits.front() == '0') return std::nullopt;
  auto major = parse_int(digits.substr(0, digits.size() - 1));
  auto minor = parse_int(digits.substr(digits.size() - 1));
  if (!major || !minor || *major < 1 || *major > kMaxMajor) return std::nullopt;
  return Capability{*major, *minor};
}

std::string packed(Capability cc) { return std::to_string(cc.major) + std::to_string(cc.minor); }

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

// The suffixed targets exist only from the generation that introduced them.
bool suffix_exists(Capability cc, TargetKind suffix) {
  switch (suffix) {
    case TargetKind::arch_specific: return !precedes(cc, {9, 0});
    case TargetKind::family_specific: return !precedes(cc, {10, 0});
    default: return true;
  }
}

// The restriction a target's code carries, whatever its form (SASS or PTX).
TargetKind restriction(const Target& t) { return t.kind == TargetKind::ptx ? t.ptx_flavor : t.kind; }

}  // namespace

std::optional<Capability> parse_capability(std::string_view text) {
  if (starts_with(text, "sm_")) return parse_packed(text.substr(3));
  const auto dot = text.find('.');
  if (dot == std::string_view::npos) return parse_packed(text);
  auto major = parse_int(text.substr(0, dot));
  const auto minor_text = text.substr(dot + 1);
  auto minor = minor_text.size() == 1 ? parse_int(minor_text) : std::nullopt;
  if (!major || !minor || *major < 1 || *major > kMaxMajor || text.front() == '0') return std::nullopt;
  return Capability{*major, *minor};
}

std::optional<Target> parse_target(std::string_view text) {
  Target t;
  std::string_view rest;
  if (starts_with(text, "sm_")) {
    rest = text.substr(3);
  } else if (starts_with(text, "compute_")) {
    rest = text.substr(8);
    t.kind = TargetKind::ptx;
  } else {
    return std::nullopt;
  }
  TargetKind suffix = TargetKind::generic;
  if (!rest.empty() && (rest.back() == 'a' || rest.back() == 'f')) {
    suffix = rest.back() == 'a' ? TargetKind::arch_specific : TargetKind::family_specific;
    rest.remove_suffix(1);
  }
  auto cc = parse_packed(rest);
  if (!cc || !suffix_exists(*cc, suffix)) return std::nullopt;
  t.cc = *cc;
  if (t.kind == TargetKind::ptx)
    t.ptx_flavor = suffix;
  else
    t.kind = suffix;
  return t;
}

std::vector<Target> parse_target_list(std::string_view list) {
  std::vector<Target> out;
  while (!list.empty()) {
    const auto end = list.find(';');
    const auto item = list.substr(0, end);
    if (auto t = parse_target(item)) out.push_back(*t);
    if (end == std::string_view::npos) break;
    list.remove_prefix(end + 1);
  }
  return out;
}

std::string to_string(Capability cc) { return std::to_string(cc.major) + "." + std::to_string(cc.minor); }

std::string to_string(const Target& t) {
  std::string s = (t.kind == TargetKind::ptx ? "compute_" : "sm_") + packed(t.cc);
  switch (restriction(t)) {
    case TargetKind::arch_specific: return s + "a";
    case TargetKind::family_specific: return s + "f";
    default: return s;
  }
}

bool runs_on(const Target& t, Capability cc) {
  const bool same_family_not_older = cc.major == t.cc.major && cc.minor >= t.cc.minor;
  switch (restriction(t)) {
    case TargetKind::arch_specific: return cc == t.cc;
    case TargetKind::family_specific: return same_family_not_older;
    default:
      // Unrestricted PTX is forward compatible with every later capability;
      // generic machine code only within its major version.
      return t.kind == TargetKind::ptx ? !precedes(cc, t.cc) : same_family_not_older;
  }
}

std::string explain_runs_on(const Target& t, Capability cc) {
  const std::string name = to_string(t);
  const std::string dev = to_string(cc);
  const bool ok = runs_on(t, cc);
  const std::string verdict = name + (ok ? " runs on " : " does not run on ") + dev + ": ";
  const std::string how = t.kind == TargetKind::ptx ? "PTX (JIT-compiled by the driver) " : "machine code ";
  switch (restriction(t)) {
    case TargetKind::arch_specific:
      return verdict + how + "built for exactly " + to_string(t.cc) + " (arch-specific 'a')";
    case TargetKind::family_specific:
      return verdict + how + "built for the " + std::to_string(t.cc.major) + ".x family from " + to_string(t.cc) +
             " on (family-specific 'f')";
    default:
      if (t.kind == TargetKind::ptx)
        return verdict + how + "runs on any capability >= " + to_string(t.cc);
      return verdict + how + "runs on " + std::to_string(t.cc.major) + ".x devices with minor >= " +
             std::to_string(t.cc.minor);
  }
}

std::optional<Target> preferred_target(std::span<const Target> targets, Capability cc) {
  // The driver prefers machine code to JIT; among machine code, the most
  // specific and newest. Scores: arch-specific > family > generic > PTX, then
  // the newest capability.
  auto kind_score = [](const Target& t) {
    switch (t.kind) {
      case TargetKind::arch_specific: return 3;
      case TargetKind::family_specific: return 2;
      case TargetKind::generic: return 1;
      default: return 0;
    }
  };
  std::optional<Target> best;
  for (const Target& t : targets) {
    if (!runs_on(t, cc)) continue;
    if (!best || kind_score(t) > kind_score(*best) ||
        (kind_score(t) == kind_score(*best) && precedes(best->cc, t.cc)))
      best = t;
  }
  return best;
}

std::string family_name(Capability cc) {
  const std::string v = " (" + to_string(cc) + ")";
  switch (cc.major) {
    case 7: return (precedes(cc, {7, 5}) ? "Volta" : "Turing") + v;
    case 8: return (cc.minor == 9 ? "Ada" : "Ampere") + v;
    case 9: return "Hopper" + v;
    case 10: return "Blackwell datacenter" + v;
    case 11: return "Thor" + v;
    case 12: return "Blackwell consumer/Spark" + v;
    default: return "unknown family" + v;
  }
}

std::vector<Capability> known_capabilities() {
  return {{7, 5}, {8, 0}, {8, 6}, {8, 7}, {8, 8}, {8, 9}, {9, 0}, {10, 0}, {10, 3}, {11, 0}, {12, 0}, {12, 1}};
}

}  // namespace vflash::arch
