// TAP with one line per Catch2 TEST_CASE (Catch2 v2's built-in "tap"
// reporter prints one line per *assertion*). Failed assertions become "# "
// comment lines under the test case's "not ok". Use: -r tapcase
#pragma once
#include <catch2/catch.hpp>
#include <sstream>
#include <string>
#include <vector>

class TapCaseReporter : public Catch::StreamingReporterBase<TapCaseReporter> {
 public:
  using StreamingReporterBase::StreamingReporterBase;
  static std::string getDescription() { return "TAP, one line per test case"; }
  Catch::ReporterPreferences getPreferences() const override {
    Catch::ReporterPreferences p;
    p.shouldRedirectStdOut = false;
    p.shouldReportAllAssertions = false;
    return p;
  }
  void noMatchingTestCases(std::string const& spec) override {
    stream << "# no test cases matched '" << spec << "'\n";
  }
  void assertionStarting(Catch::AssertionInfo const&) override {}
  bool assertionEnded(Catch::AssertionStats const& st) override {
    const auto& r = st.assertionResult;
    if (r.isOk()) return true;
    std::ostringstream os;
    os << r.getSourceInfo() << ": ";
    if (r.hasExpression()) os << r.getExpressionInMacro() << " with expansion " << r.getExpandedExpression();
    if (r.hasMessage()) os << " " << r.getMessage();
    for (const auto& m : st.infoMessages) if (m.message != r.getMessage()) os << " [" << m.message << "]";
    problems_.push_back(os.str());
    return true;
  }
  void testCaseStarting(Catch::TestCaseInfo const& info) override {
    StreamingReporterBase::testCaseStarting(info);
    problems_.clear();
  }
  void testCaseEnded(Catch::TestCaseStats const& st) override {
    ++n_;
    std::string name = st.testInfo.name;
    for (char& c : name) if (c == '#' || c == '\n') c = '_';
    bool ok = st.totals.assertions.failed == 0 || st.testInfo.okToFail();
    stream << (ok ? "ok " : "not ok ") << n_ << " - " << name;
    if (st.testInfo.okToFail() && st.totals.assertions.failed) stream << " # TODO may fail";
    stream << "\n";
    for (const auto& p : problems_) {
      std::istringstream lines(p);
      for (std::string l; std::getline(lines, l);) stream << "# " << l << "\n";
    }
    stream.flush();
    StreamingReporterBase::testCaseEnded(st);
  }
  void testRunEnded(Catch::TestRunStats const& st) override {
    stream << "1.." << n_ << "\n";
    stream.flush();
    StreamingReporterBase::testRunEnded(st);
  }
 private:
  std::size_t n_ = 0;
  std::vector<std::string> problems_;
};
CATCH_REGISTER_REPORTER("tapcase", TapCaseReporter)
