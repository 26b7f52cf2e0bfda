// Internal to src/store: STORE_ASSIGN(lhs, expr) declares/assigns the value of
// a Result expression or early-returns its error (the OUTPOST_TRY of values).
#pragma once
#include <utility>

#include "base/result.hpp"

#define STORE_CAT2_(a, b) a##b
#define STORE_CAT_(a, b) STORE_CAT2_(a, b)
#define STORE_ASSIGN_IMPL_(tmp, lhs, expr)              \
  auto tmp = (expr);                                    \
  if (!tmp.ok()) return std::move(tmp).error();         \
  lhs = std::move(tmp).value()
#define STORE_ASSIGN(lhs, expr) STORE_ASSIGN_IMPL_(STORE_CAT_(store_assign_r_, __LINE__), lhs, expr)
