// The architecture model against an explicit truth table written by hand from
// NVIDIA's compatibility rules (not computed with the model's logic), plus
// parse/print round trips, rejection of garbage and the origin regression.
#include <gtest/gtest.h>

#include <array>
#include <string>

#include "arch.hpp"

namespace vflash::arch {
namespace {

// Columns: the capabilities of known_capabilities(), in this order.
constexpr std::array<const char*, 12> kCaps = {"7.5", "8.0", "8.6", "8.7", "8.8", "8.9",
                                                "9.0", "10.0", "10.3", "11.0", "12.0", "12.1"};

struct Row {
  const char* target;
  const char* runs;  // one character per column of kCaps: 'x' runs, '.' does not
};

// clang-format off
constexpr Row kTruth[] = {
  //                    7.5 8.0 8.6 8.7 8.8 8.9 9.0 10.0 10.3 11.0 12.0 12.1
  {"sm_75",          "x..........."},
  {"sm_80",          ".xxxxx......"},
  {"sm_86",          "..xxxx......"},
  {"sm_87",          "...xxx......"},
  {"sm_88",          "....xx......"},
  {"sm_89",          ".....x......"},
  {"sm_90",          "......x....."},
  {"sm_100",         ".......xx..."},
  {"sm_103",         "........x..."},
  {"sm_110",         ".........x.."},
  {"sm_120",         "..........xx"},
  {"sm_121",         "...........x"},
  {"sm_90a",         "......x....."},
  {"sm_100a",        ".......x...."},
  {"sm_103a",        "........x..."},
  {"sm_100f",        ".......xx..."},
  {"sm_103f",        "........x..."},
  {"sm_110f",        ".........x.."},
  {"sm_120f",        "..........xx"},
  {"sm_121a",        "...........x"},
  {"compute_75",     "xxxxxxxxxxxx"},
  {"compute_80",     ".xxxxxxxxxxx"},
  {"compute_90",     "......xxxxxx"},
  {"compute_100",    ".......xxxxx"},
  {"compute_120",    "..........xx"},
  {"compute_90a",    "......x....."},
  {"compute_100f",   ".......xx..."},
};
// clang-format on

TEST(Arch, KnownCapabilitiesAreTheTableColumns) {
  const auto caps = known_capabilities();
  ASSERT_EQ(caps.size(), kCaps.size());
  for (size_t i = 0; i < caps.size(); ++i) EXPECT_EQ(to_string(caps[i]), kCaps[i]);
}

TEST(Arch, TruthTableEveryTargetOnEveryCapability) {
  int checked = 0;
  for (const Row& row : kTruth) {
    const auto target = parse_target(row.target);
    ASSERT_TRUE(target) << row.target;
    ASSERT_EQ(std::string(row.runs).size(), kCaps.size()) << row.target;
    for (size_t i = 0; i < kCaps.size(); ++i) {
      const auto cc = parse_capability(kCaps[i]);
      ASSERT_TRUE(cc) << kCaps[i];
      const bool expected = row.runs[i] == 'x';
      EXPECT_EQ(runs_on(*target, *cc), expected) << row.target << " on " << kCaps[i];
      // The explanation agrees with the relation.
      const std::string why = explain_runs_on(*target, *cc);
      EXPECT_NE(why.find(expected ? " runs on " : " does not run on "), std::string::npos) << why;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 27 * 12);
}

TEST(Arch, TargetKinds) {
  EXPECT_EQ(parse_target("sm_90")->kind, TargetKind::generic);
  EXPECT_EQ(parse_target("sm_90a")->kind, TargetKind::arch_specific);
  EXPECT_EQ(parse_target("sm_100f")->kind, TargetKind::family_specific);
  const auto ptx_f = parse_target("compute_100f");
  EXPECT_EQ(ptx_f->kind, TargetKind::ptx);
  EXPECT_EQ(ptx_f->ptx_flavor, TargetKind::family_specific);
  EXPECT_EQ(parse_target("compute_90a")->ptx_flavor, TargetKind::arch_specific);
  EXPECT_EQ(parse_target("compute_75")->ptx_flavor, TargetKind::generic);
  EXPECT_EQ((parse_target("sm_103a")->cc), (Capability{10, 3}));
  EXPECT_EQ((parse_target("sm_121a")->cc), (Capability{12, 1}));
}

TEST(Arch, TargetRoundTrips) {
  for (const Row& row : kTruth) {
    const auto t = parse_target(row.target);
    ASSERT_TRUE(t) << row.target;
    EXPECT_EQ(to_string(*t), row.target);
    EXPECT_EQ(parse_target(to_string(*t)), t);
  }
}

TEST(Arch, CapabilityForms) {
  const Capability b300{10, 3};
  EXPECT_EQ(parse_capability("10.3"), b300);
  EXPECT_EQ(parse_capability("103"), b300);
  EXPECT_EQ(parse_capability("sm_103"), b300);
  EXPECT_EQ(parse_capability("9.0"), (Capability{9, 0}));
  EXPECT_EQ(parse_capability("90"), (Capability{9, 0}));
  EXPECT_EQ(parse_capability("sm_121"), (Capability{12, 1}));
  EXPECT_EQ(parse_capability("7.5"), (Capability{7, 5}));
  for (const char* text : kCaps) EXPECT_EQ(to_string(*parse_capability(text)), text);
}

TEST(Arch, RejectsGarbage) {
  for (const char* bad : {"sm_", "sm_9x", "compute_", "10.", "", "sm_1000000000", "compute_1000000000",
                          "sm_90b", "sm_90aa", "SM_90", "sm90", "compute90", "sm_090", "sm_9",
                          "sm_80a", "compute_90f", "sm_75f", " sm_90", "sm_90 ", "sm_-90"}) {
    EXPECT_FALSE(parse_target(bad)) << '"' << bad << '"';
  }
  for (const char* bad : {"sm_", "sm_9x", "compute_", "10.", "", "sm_1000000000", ".3", "10.33", "1o.3",
                          "10.3.1", "0.3", "x", "-10.3", "10,3", "sm_103a", "9", "1000"}) {
    EXPECT_FALSE(parse_capability(bad)) << '"' << bad << '"';
  }
}

TEST(Arch, TargetList) {
  const auto list = parse_target_list("sm_80;sm_90a;compute_80");
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(to_string(list[0]), "sm_80");
  EXPECT_EQ(to_string(list[1]), "sm_90a");
  EXPECT_EQ(to_string(list[2]), "compute_80");
  EXPECT_TRUE(parse_target_list("").empty());
}

TEST(Arch, PreferredTargetIsMachineCodeBeforePtx) {
  const auto list = parse_target_list("sm_80;sm_90;sm_90a;sm_100;compute_80");
  EXPECT_EQ(to_string(*preferred_target(list, {9, 0})), "sm_90a");
  EXPECT_EQ(to_string(*preferred_target(list, {8, 9})), "sm_80");
  EXPECT_EQ(to_string(*preferred_target(list, {10, 3})), "sm_100");
  EXPECT_EQ(to_string(*preferred_target(list, {12, 1})), "compute_80");
  EXPECT_FALSE(preferred_target(list, {7, 5}));
}

TEST(Arch, FamilyNames) {
  EXPECT_EQ(family_name({7, 5}), "Turing (7.5)");
  EXPECT_EQ(family_name({8, 0}), "Ampere (8.0)");
  EXPECT_EQ(family_name({8, 8}), "Ampere (8.8)");
  EXPECT_EQ(family_name({8, 9}), "Ada (8.9)");
  EXPECT_EQ(family_name({9, 0}), "Hopper (9.0)");
  EXPECT_EQ(family_name({10, 3}), "Blackwell datacenter (10.3)");
  EXPECT_EQ(family_name({11, 0}), "Thor (11.0)");
  EXPECT_EQ(family_name({12, 1}), "Blackwell consumer/Spark (12.1)");
  EXPECT_NE(family_name({13, 0}).find("unknown"), std::string::npos);
}

// --- The origin failure: 10.3 rejected by an enum range ---------------------
// A kernel guarded itself with `arch >= Arch.sm_100 && arch <= Arch.sm_110f`
// over enum values whose numeric mapping differed between two toolkit builds
// of a kernel DSL: in its CUDA 12 build, sm_110f mapped to 101 (Thor's old
// number), so "<= sm_110f" meant "<= 10.1" and B300 (10.3) was rejected.
struct ToolkitEnumMapping {
  const char* build;
  int sm_100;
  int sm_110f;
  int device_10_3;
};
constexpr ToolkitEnumMapping kCuda13Build{"CUDA 13", 100, 110, 103};
constexpr ToolkitEnumMapping kCuda12Build{"CUDA 12", 100, 101, 103};

bool enum_range_guard(const ToolkitEnumMapping& m, int device_arch) {
  return device_arch >= m.sm_100 && device_arch <= m.sm_110f;
}

TEST(Arch, OriginRegressionEnumRangeRejects103) {
  // The failure, reproduced: the same source line accepts 10.3 in one build
  // and rejects it in the other.
  EXPECT_TRUE(enum_range_guard(kCuda13Build, kCuda13Build.device_10_3));
  EXPECT_FALSE(enum_range_guard(kCuda12Build, kCuda12Build.device_10_3));

  // The model answers from the kind of target, independent of any enum:
  // 10.3 runs code built as sm_100f, sm_100, compute_100 (and sm_103a), ...
  const Capability b300 = *parse_capability("10.3");
  for (const char* ok : {"sm_100f", "sm_100", "compute_100", "sm_103a", "sm_103f", "compute_100f", "compute_90"})
    EXPECT_TRUE(runs_on(*parse_target(ok), b300)) << ok;
  // ... and rejects exactly the arch-specific code of other chips and other
  // families' machine code.
  for (const char* no : {"sm_100a", "sm_90a", "sm_90", "sm_110f", "sm_120", "compute_90a", "compute_120"})
    EXPECT_FALSE(runs_on(*parse_target(no), b300)) << no;
  // The family rule covers the whole 10.x family from 10.0 on, never 11.x.
  EXPECT_TRUE(runs_on(*parse_target("sm_100f"), {10, 0}));
  EXPECT_FALSE(runs_on(*parse_target("sm_100f"), {11, 0}));
}

}  // namespace
}  // namespace vflash::arch
