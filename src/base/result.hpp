// Result<T>: a value or an Error, returned across every module boundary.
// Project code never throws; callers must look at the result ([[nodiscard]]).
#pragma once
#include <cassert>
#include <utility>
#include <variant>

#include "base/error.hpp"

namespace outpost {

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T v) : v_(std::in_place_index<0>, std::move(v)) {}
  Result(Error e) : v_(std::in_place_index<1>, std::move(e)) {}
  Result(Errc c, std::string d = {}) : v_(std::in_place_index<1>, Error(c, std::move(d))) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(v_); }
  const T& value() const& { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const& { assert(!ok()); return std::get<1>(v_); }
  Error&& error() && { assert(!ok()); return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

/// Result<void>: success carries nothing.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error e) : err_(std::move(e)), ok_(false) {}
  Result(Errc c, std::string d = {}) : err_(c, std::move(d)), ok_(false) {}
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const& { assert(!ok_); return err_; }
  Error&& error() && { assert(!ok_); return std::move(err_); }

 private:
  Error err_{Errc::Ok};
  bool ok_ = true;
};

using Status = Result<void>;

}  // namespace outpost

/// Early-return the error of a Result expression.
#define OUTPOST_TRY(expr)                              \
  do {                                                 \
    auto&& outpost_try_r_ = (expr);                    \
    if (!outpost_try_r_.ok()) return std::move(outpost_try_r_).error(); \
  } while (0)
