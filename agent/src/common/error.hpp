#pragma once

// Errors as values for code that touches the OS or libbpf: an errno plus the context of what
// was being done ("attach tp_btf/sched_process_exec: Operation not permitted").

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace vigil {

class Error {
 public:
  Error(int err, std::string context) : errno_(err < 0 ? -err : err), context_(std::move(context)) {}

  // The errno (positive), or 0 when the error does not come from the OS.
  int code() const { return errno_; }
  const std::string& context() const { return context_; }
  std::string message() const {
    return errno_ == 0 ? context_ : context_ + ": " + std::strerror(errno_);
  }

 private:
  int errno_;
  std::string context_;
};

// Either a value or an Error. Deliberately small: value(), error(), ok().
template <typename T>
class Expected {
 public:
  Expected(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Expected(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<T>(v_); }
  const T& value() const { return std::get<T>(v_); }
  const Error& error() const { return std::get<Error>(v_); }
  T* operator->() { return &value(); }
  T& operator*() { return value(); }

 private:
  std::variant<T, Error> v_;
};

// Success or an Error.
class Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT
  static Status success() { return {}; }

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_{0, ""};
  bool ok_ = true;
};

}  // namespace vigil
