// The mma kernel's checked-in instantiation list (src/kernels/mma/instances_*.cu
// and mma_instances.inc) must equal what its generator writes.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

TEST(MmaInstances, CheckedInListMatchesGenerator) {
  const std::filesystem::path root = std::filesystem::path(__FILE__).parent_path().parent_path();
  const std::filesystem::path generator = root / "src" / "kernels" / "mma" / "instances.py";
  ASSERT_TRUE(std::filesystem::exists(generator)) << generator;
  if (std::system("python3 --version > /dev/null 2>&1") != 0) GTEST_SKIP() << "python3 not found";
  const std::string cmd = "python3 '" + generator.string() + "' --check";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd << " reports a stale list";
}
