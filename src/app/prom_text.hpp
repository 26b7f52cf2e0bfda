// Prometheus text exposition helpers shared by the metric writers of
// app/ops.cpp and app/ops_storage.cpp (they were written twice).
#pragma once
#include <cstdint>
#include <string>

namespace outpost::app::prom {

/// The "# HELP" and "# TYPE" lines of one series.
inline void series(std::string& out, const char* name, const char* help, const char* type) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

/// One sample line, `labels` being `key="value",...` without braces.
inline void sample(std::string& out, const char* name, uint64_t v, const std::string& labels = {}) {
  out += name;
  if (!labels.empty()) out += "{" + labels + "}";
  out += ' ';
  out += std::to_string(v);
  out += '\n';
}

/// A series of one unlabelled sample.
inline void counter(std::string& out, const char* name, const char* help, uint64_t v, const char* type = "counter") {
  series(out, name, help, type);
  sample(out, name, v);
}

}  // namespace outpost::app::prom
