// Host fp16 / bf16 conversions (src/dtype.hpp), checked exhaustively over all
// 65536 encodings and against an independent round-to-nearest-even: the
// nearest of all finite values of the format, found by search in float64.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "dtype.hpp"

namespace vflash {
namespace {

using ToFloat = float (*)(uint16_t);
using FromFloat = uint16_t (*)(float);

struct Format {
  const char* name;
  ToFloat to_float;
  FromFloat from_float;
  int exponent_bits, mantissa_bits;
};

const Format kFormats[] = {
    {"fp16", fp16_to_float, float_to_fp16, 5, 10},
    {"bf16", bf16_to_float, float_to_bf16, 8, 7},
};

float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Value of an encoding decoded from its fields in float64 (independent of dtype.hpp).
double decode(const Format& f, uint16_t h) {
  const int bias = (1 << (f.exponent_bits - 1)) - 1;
  const int exp = (h >> f.mantissa_bits) & ((1 << f.exponent_bits) - 1);
  const int man = h & ((1 << f.mantissa_bits) - 1);
  const double sign = (h >> 15) ? -1.0 : 1.0;
  if (exp == (1 << f.exponent_bits) - 1)
    return man ? std::numeric_limits<double>::quiet_NaN() : sign * std::numeric_limits<double>::infinity();
  if (exp == 0) return sign * std::ldexp(double(man), 1 - bias - f.mantissa_bits);
  return sign * std::ldexp(double(man + (1 << f.mantissa_bits)), exp - bias - f.mantissa_bits);
}

// All non-negative finite encodings in increasing order of value (encoding
// order equals value order for them).
std::vector<uint16_t> positive_finite(const Format& f) {
  std::vector<uint16_t> codes;
  const uint16_t inf = uint16_t(((1u << f.exponent_bits) - 1) << f.mantissa_bits);
  for (uint32_t h = 0; h < inf; ++h) codes.push_back(uint16_t(h));
  return codes;
}

// Independent round-to-nearest-even of x to the format.
uint16_t round_reference(const Format& f, const std::vector<uint16_t>& pos, float x) {
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  const double a = std::fabs(double(x));
  const uint16_t inf = uint16_t(pos.back() + 1);
  if (std::isinf(a)) return sign | inf;
  // First encoding with value >= a.
  const auto it = std::lower_bound(pos.begin(), pos.end(), a,
                                   [&](uint16_t h, double v) { return decode(f, h) < v; });
  uint16_t lo, hi;
  double vhi;
  if (it == pos.end()) {  // beyond the largest finite: the next step up is infinity
    lo = pos.back();
    hi = inf;
    vhi = std::ldexp(1.0, (1 << (f.exponent_bits - 1)));  // 2^(emax+1), where the next value would be
  } else {
    hi = *it;
    vhi = decode(f, hi);
    if (vhi == a) return sign | hi;
    lo = uint16_t(hi - 1);
  }
  const double vlo = decode(f, lo);
  const double dlo = a - vlo, dhi = vhi - a;
  if (dlo < dhi) return sign | lo;
  if (dhi < dlo) return sign | hi;
  return sign | ((lo & 1) ? hi : lo);  // tie: even mantissa
}

TEST(DType, DecodeMatchesFieldsForAllEncodings) {
  for (const Format& f : kFormats) {
    for (uint32_t h = 0; h < 65536; ++h) {
      const double want = decode(f, uint16_t(h));
      const float got = f.to_float(uint16_t(h));
      if (std::isnan(want)) {
        EXPECT_TRUE(std::isnan(got)) << f.name << " code " << h;
      } else {
        ASSERT_EQ(double(got), want) << f.name << " code " << h;
        EXPECT_EQ(std::signbit(got), bool(h & 0x8000)) << f.name << " code " << h;  // -0 keeps its sign
      }
    }
  }
}

TEST(DType, RoundTripOfEveryEncoding) {
  for (const Format& f : kFormats) {
    for (uint32_t h = 0; h < 65536; ++h) {
      const float x = f.to_float(uint16_t(h));
      const uint16_t back = f.from_float(x);
      if (std::isnan(x)) {
        EXPECT_TRUE(std::isnan(f.to_float(back))) << f.name << " NaN code " << h << " became " << back;
      } else {
        ASSERT_EQ(back, uint16_t(h)) << f.name << " code " << h;
      }
    }
  }
}

// Midpoints between neighbouring values (ties), and one float ulp either side,
// for every pair of neighbours including the largest finite and infinity.
TEST(DType, RoundingAtEveryMidpoint) {
  for (const Format& f : kFormats) {
    const auto pos = positive_finite(f);
    for (size_t i = 0; i < pos.size(); ++i) {
      const double lo = decode(f, pos[i]);
      const double hi = i + 1 < pos.size() ? decode(f, pos[i + 1]) : std::ldexp(1.0, 1 << (f.exponent_bits - 1));
      const float mid = float((lo + hi) / 2);  // exact: a float has more mantissa bits
      ASSERT_EQ(double(mid), (lo + hi) / 2);
      for (float x : {mid, std::nextafter(mid, 0.f), std::nextafter(mid, INFINITY)}) {
        for (float sx : {x, -x}) {
          ASSERT_EQ(f.from_float(sx), round_reference(f, pos, sx)) << f.name << " x=" << sx;
        }
      }
    }
  }
}

TEST(DType, RoundingOfRandomAndSpecialFloats) {
  std::random_device rd;
  const uint32_t seed = rd();
  std::mt19937 gen(seed);
  for (const Format& f : kFormats) {
    const auto pos = positive_finite(f);
    for (int i = 0; i < 200000; ++i) {
      const float x = bits_to_float(gen());
      const uint16_t got = f.from_float(x);
      if (std::isnan(x)) {
        ASSERT_TRUE(std::isnan(f.to_float(got))) << f.name << " seed " << seed;
      } else {
        ASSERT_EQ(got, round_reference(f, pos, x)) << f.name << " x=" << x << " seed " << seed;
      }
    }
    for (float x : {0.f, -0.f, INFINITY, -INFINITY, std::numeric_limits<float>::max(),
                    std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::min(), 1.f, -1.f,
                    65504.f, 65519.99f, 65520.f, 1e-8f, 2.9802322e-08f /* 2^-25: fp16 tie to 0 */}) {
      ASSERT_EQ(f.from_float(x), round_reference(f, pos, x)) << f.name << " x=" << x;
    }
  }
}

TEST(DType, KnownValues) {
  EXPECT_EQ(float_to_fp16(1.0f), 0x3c00);
  EXPECT_EQ(float_to_fp16(65504.f), 0x7bff);
  EXPECT_EQ(float_to_fp16(65520.f), 0x7c00);  // tie between max and 2^16 goes to even: infinity
  EXPECT_EQ(float_to_fp16(std::ldexp(1.f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(float_to_fp16(std::ldexp(1.f, -25)), 0x0000);  // tie to even: zero
  EXPECT_EQ(float_to_fp16(std::ldexp(3.f, -25)), 0x0002);  // 1.5 units: tie to even 2
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(float_to_bf16(bits_to_float(0x3f808000u)), 0x3f80);  // tie, even stays
  EXPECT_EQ(float_to_bf16(bits_to_float(0x3f818000u)), 0x3f82);  // tie, odd rounds up
  EXPECT_EQ(float_to_bf16(bits_to_float(0x7f7fffffu)), 0x7f80);  // FLT_MAX rounds to infinity
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(bits_to_float(0x7f800001u)))));  // NaN stays NaN
  EXPECT_TRUE(std::isnan(fp16_to_float(float_to_fp16(bits_to_float(0x7f800001u)))));
}

}  // namespace
}  // namespace vflash
