// Policy YAML -> model: the valid schema, and one test per class of rejection, each checking
// the exact line and column that an operator would be sent to.

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "policy/document.hpp"
#include "policy/model.hpp"

namespace vigil::policy {
namespace {

constexpr const char* kFile = "test.yaml";

ParseResult parse(const std::string& text) { return parsePolicies(text, kFile); }

// Asserts that parsing failed, that no policy came back, and that the first error is at
// line:column and contains `substring`.
void expectFirstError(const ParseResult& r, int line, int column, const std::string& substring) {
  ASSERT_FALSE(r.ok()) << "expected an error containing: " << substring;
  EXPECT_TRUE(r.policies.empty());
  EXPECT_EQ(r.errors[0].position.file, kFile);
  EXPECT_EQ(r.errors[0].position.line, line) << r.errorText();
  EXPECT_EQ(r.errors[0].position.column, column) << r.errorText();
  EXPECT_NE(r.errors[0].message.find(substring), std::string::npos) << r.errorText();
}

// A temporary file that removes itself.
class TempFile {
 public:
  explicit TempFile(const std::string& contents) {
    char name[] = "/tmp/vigil_policy_test_XXXXXX";
    const int fd = mkstemp(name);
    EXPECT_GE(fd, 0);
    close(fd);
    path_ = name;
    std::ofstream out(path_, std::ios::binary);
    out << contents;
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// --- Valid input -----------------------------------------------------------------------------

TEST(PolicyDocument, ValidMultiDocumentFileWithEveryField) {
  const std::string path = std::string(VIGIL_POLICY_TESTDATA) + "/valid.yaml";
  const ParseResult r = parsePolicyFile(path);
  ASSERT_TRUE(r.ok()) << r.errorText();
  // The trailing "---" with nothing after it is an empty document and is skipped.
  ASSERT_EQ(r.policies.size(), 3u);

  const Policy& p = r.policies[0];
  EXPECT_EQ(p.name, "deny-tmp-execs");
  EXPECT_EQ(p.mode, Mode::enforce);
  EXPECT_EQ(p.position.file, path);
  EXPECT_EQ(p.position.line, 2);
  EXPECT_EQ(p.position.column, 1);
  ASSERT_EQ(p.exec.size(), 2u);

  const ExecRule& tmp = p.exec[0];
  EXPECT_EQ(tmp.name, "no-tmp");
  EXPECT_EQ(tmp.action, ExecAction::kill);
  EXPECT_FALSE(tmp.mode.has_value());
  EXPECT_EQ(tmp.effectiveMode(p.mode), Mode::enforce);
  EXPECT_EQ(tmp.position.line, 12);
  EXPECT_EQ(tmp.position.column, 7);
  EXPECT_EQ(tmp.match.pathPrefixes, (std::vector<std::string>{"/tmp/", "/dev/shm/"}));
  EXPECT_TRUE(tmp.match.binaries.empty());
  EXPECT_TRUE(tmp.match.binaryPositions.empty());

  const ExecRule& nc = p.exec[1];
  EXPECT_EQ(nc.name, "no-nc");
  EXPECT_EQ(nc.mode, Mode::audit);
  EXPECT_EQ(nc.effectiveMode(p.mode), Mode::audit);
  EXPECT_EQ(nc.match.binaries, (std::vector<std::string>{"/usr/bin/nc", "/usr/bin/ncat"}));
  ASSERT_EQ(nc.match.binaryPositions.size(), 2u);
  EXPECT_EQ(nc.match.binaryPositions[0].file, path);
  EXPECT_EQ(nc.match.binaryPositions[0].line, 21);
  EXPECT_EQ(nc.match.binaryPositions[0].column, 13);
  EXPECT_EQ(nc.match.binaryPositions[1].line, 22);
  EXPECT_EQ(nc.match.binaryPositions[1].column, 13);  // the opening quote
  EXPECT_EQ(nc.match.parentBinaries, (std::vector<std::string>{"/usr/sbin/nginx"}));
  ASSERT_EQ(nc.match.parentBinaryPositions.size(), 1u);
  EXPECT_EQ(nc.match.parentBinaryPositions[0].line, 23);
  EXPECT_EQ(nc.match.parentBinaryPositions[0].column, 26);
  EXPECT_EQ(nc.match.uids, (std::vector<uint32_t>{1000, 0, 4294967294u}));
  EXPECT_EQ(nc.match.cgroupPathPrefixes, (std::vector<std::string>{"/kubepods.slice/"}));

  const Policy& audit = r.policies[1];
  EXPECT_EQ(audit.name, "audit-uid-1000");
  EXPECT_EQ(audit.mode, Mode::audit);
  EXPECT_EQ(audit.position.line, 27);
  ASSERT_EQ(audit.exec.size(), 1u);
  EXPECT_EQ(audit.exec[0].action, ExecAction::audit);
  EXPECT_EQ(audit.exec[0].effectiveMode(audit.mode), Mode::audit);
  EXPECT_EQ(audit.exec[0].match.uids, (std::vector<uint32_t>{1000}));
  EXPECT_EQ(audit.exec[0].match.cgroupPathPrefixes,
            (std::vector<std::string>{"/kubepods.slice/kubepods-burstable.slice/"}));

  EXPECT_EQ(r.policies[2].name, "placeholder");
  EXPECT_TRUE(r.policies[2].exec.empty());
}

TEST(PolicyDocument, DefaultsAndNullsMeanUnset) {
  const ParseResult r = parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  name: p
  labels:
spec:
  mode:
  exec:
    - name: r
      action: kill
      mode: ~
      match:
        binaries: []
        uids: [0]
)");
  ASSERT_TRUE(r.ok()) << r.errorText();
  ASSERT_EQ(r.policies.size(), 1u);
  EXPECT_EQ(r.policies[0].mode, Mode::enforce);
  ASSERT_EQ(r.policies[0].exec.size(), 1u);
  EXPECT_FALSE(r.policies[0].exec[0].mode.has_value());
  EXPECT_TRUE(r.policies[0].exec[0].match.binaries.empty());
  EXPECT_EQ(r.policies[0].exec[0].match.uids, (std::vector<uint32_t>{0}));
}

TEST(PolicyDocument, DefaultTagsAndQuotedStringsAreAccepted) {
  const ParseResult r = parse(R"(%YAML 1.2
--- !!map
apiVersion: !!str vigil.dev/v1alpha1
kind: 'Policy'
metadata: {name: "p"}
spec:
  exec: !!seq
    - {name: r, action: audit, match: {uids: [!!int "42"], binaries: [! /bin/sh]}}
...
)");
  ASSERT_TRUE(r.ok()) << r.errorText();
  ASSERT_EQ(r.policies.size(), 1u);
  EXPECT_EQ(r.policies[0].exec[0].match.uids, (std::vector<uint32_t>{42}));
  EXPECT_EQ(r.policies[0].exec[0].match.binaries, (std::vector<std::string>{"/bin/sh"}));
}

TEST(PolicyModel, StringsAndEmptiness) {
  EXPECT_STREQ(toString(Mode::enforce), "enforce");
  EXPECT_STREQ(toString(Mode::audit), "audit");
  EXPECT_STREQ(toString(ExecAction::kill), "kill");
  EXPECT_STREQ(toString(ExecAction::audit), "audit");
  EXPECT_EQ((Position{"a.yaml", 3, 7}.str()), "a.yaml:3:7");
  EXPECT_EQ((Position{"a.yaml", 0, 0}.str()), "a.yaml");
  ExecMatch m;
  EXPECT_TRUE(m.empty());
  m.uids.push_back(0);
  EXPECT_FALSE(m.empty());
  ParseIssue issue{Position{"a.yaml", 3, 7}, "boom"};
  EXPECT_EQ(issue.str(), "a.yaml:3:7: boom");
  ParseResult r;
  r.errors = {issue, issue};
  EXPECT_EQ(r.errorText(), "a.yaml:3:7: boom\na.yaml:3:7: boom");
}

// --- YAML-level rejections -------------------------------------------------------------------

TEST(PolicyDocument, RejectsSyntaxError) {
  expectFirstError(parse("apiVersion: vigil.dev/v1alpha1\nkind: Policy\nmetadata: {name: [a\n"), 4,
                   1, "syntax error");
}

TEST(PolicyDocument, RejectsTabIndentation) {
  expectFirstError(parse("apiVersion: vigil.dev/v1alpha1\nkind: Policy\nmetadata:\n\tname: x\n"), 4,
                   1, "tab");
}

TEST(PolicyDocument, RejectsDuplicateKeyAtTheDuplicate) {
  const ParseResult r = parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  name: a
  name: b
)");
  expectFirstError(r, 5, 3, "duplicate key \"name\" (first at line 4, column 3)");
  ASSERT_EQ(r.errors.size(), 1u) << r.errorText();
}

TEST(PolicyDocument, RejectsDuplicateKeyInsideARule) {
  expectFirstError(parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata: {name: a}
spec:
  exec:
    - name: r
      action: kill
      match: {uids: [1]}
      action: audit
)"),
                   9, 7, "duplicate key \"action\"");
}

TEST(PolicyDocument, RejectsAnchorsAndAliases) {
  const ParseResult r = parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  name: a
spec:
  exec:
    - name: r1
      action: kill
      match: &m {uids: [1]}
    - name: r2
      action: kill
      match: *m
)");
  expectFirstError(r, 9, 14, "anchors are not supported (&m)");
  ASSERT_EQ(r.errors.size(), 2u) << r.errorText();
  EXPECT_EQ(r.errors[1].position.line, 12);
  EXPECT_EQ(r.errors[1].position.column, 14);
  EXPECT_NE(r.errors[1].message.find("aliases are not supported (*m)"), std::string::npos);
}

TEST(PolicyDocument, RejectsMergeKeys) {
  expectFirstError(parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  <<: {name: x}
)"),
                   4, 3, "merge keys");
}

TEST(PolicyDocument, RejectsNonDefaultTags) {
  expectFirstError(parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  name: !secret a
)"),
                   4, 9, "tag !secret is not supported");
  expectFirstError(parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  name: !!binary YQ==
)"),
                   4, 9, "tag !!binary is not supported");
  expectFirstError(parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata: !!seq {name: a}
)"),
                   3, 11, "tag !!seq does not fit");
}

TEST(PolicyDocument, RejectsBadUtf8AndNulBytes) {
  expectFirstError(parse("apiVersion: vigil.dev/v1alpha1\nkind: Policy\n# caf\xc3\xa9 \xff\n"), 3,
                   8, "not valid UTF-8");
  expectFirstError(parse(std::string("apiVersion: vigil.dev/v1alpha1\nkind: Po\0licy\n", 45)), 2, 9,
                   "NUL byte");
}

TEST(PolicyDocument, RejectsNestingDeeperThan64) {
  std::string deep = "apiVersion: vigil.dev/v1alpha1\nkind: Policy\nmetadata: {name: a, labels: ";
  deep += std::string(70, '[') + std::string(70, ']') + "}\n";
  // metadata's mapping is level 2, labels' first '[' level 3: level 65 is the 63rd bracket.
  expectFirstError(parse(deep), 3, 29 + 62, "nesting is deeper than 64 levels");
}

TEST(PolicyDocument, RejectsADocumentThatIsNotAMapping) {
  expectFirstError(parse("- apiVersion\n- kind\n"), 1, 1, "must be a mapping, got a list");
  expectFirstError(parse("--- just a string\n"), 1, 5, "must be a mapping, got a string");
}

TEST(PolicyDocument, RejectsEmptyText) {
  for (const char* text : {"", "# nothing here\n", "---\n---\n"}) {
    const ParseResult r = parse(text);
    ASSERT_EQ(r.errors.size(), 1u) << text;
    EXPECT_EQ(r.errors[0].message, "no policy documents");
    EXPECT_EQ(r.errors[0].position.line, 0);
    EXPECT_EQ(r.errors[0].str(), "test.yaml: no policy documents");
  }
}

// --- Schema rejections -----------------------------------------------------------------------

TEST(PolicyDocument, RejectsWrongApiVersionAndKind) {
  const ParseResult r = parse(R"(apiVersion: vigil.dev/v1
kind: Pod
metadata: {name: a}
)");
  expectFirstError(r, 1, 13, "apiVersion: unsupported value \"vigil.dev/v1\"");
  ASSERT_EQ(r.errors.size(), 2u);
  EXPECT_EQ(r.errors[1].position.line, 2);
  EXPECT_EQ(r.errors[1].position.column, 7);
  EXPECT_NE(r.errors[1].message.find("kind: unsupported value \"Pod\"; expected \"Policy\""),
            std::string::npos);
}

TEST(PolicyDocument, RejectsUnknownFieldsNamingTheAllowedOnes) {
  expectFirstError(parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata: {name: a}
spec:
  exec:
    - name: r
      action: kill
      match:
        binary: [/usr/bin/nc]
)"),
                   9, 9,
                   "spec.exec[0].match: unknown field \"binary\" (allowed: binaries, pathPrefixes, "
                   "parentBinaries, uids, cgroupPathPrefixes)");
  expectFirstError(parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata: {name: a, namespace: default}
)"),
                   3, 21, "metadata: unknown field \"namespace\" (allowed: name, labels)");
  expectFirstError(parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata: {name: a}
Spec: {}
)"),
                   4, 1, "unknown field \"Spec\" (allowed: apiVersion, kind, metadata, spec)");
}

TEST(PolicyDocument, RejectsWrongTypes) {
  // A mapping where a list is expected.
  expectFirstError(parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata: {name: a}
spec:
  exec:
    name: r
)"),
                   6, 5, "spec.exec: expected a list, got a mapping");
  // A quoted uid is a string.
  expectFirstError(parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata: {name: a}
spec:
  exec:
    - {name: r, action: kill, match: {uids: [1, "1000"]}}
)"),
                   6, 49, "spec.exec[0].match.uids[1]: expected a uid");
  // Negative and too large.
  const ParseResult r = parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata: {name: a}
spec:
  exec:
    - name: r
      action: kill
      match:
        uids:
          - -1
          - 4294967295
          - 1.5
          - 010
)");
  expectFirstError(r, 10, 13, "uid -1 is negative");
  ASSERT_EQ(r.errors.size(), 4u) << r.errorText();
  EXPECT_EQ(r.errors[1].position.line, 11);
  EXPECT_NE(r.errors[1].message.find("over the maximum of 4294967294"), std::string::npos);
  EXPECT_EQ(r.errors[2].position.line, 12);
  EXPECT_NE(r.errors[2].message.find("got a number"), std::string::npos);
  EXPECT_EQ(r.errors[3].position.line, 13);
  EXPECT_NE(r.errors[3].message.find("leading zero"), std::string::npos);
  // A number where a string is expected, and a list where a mapping is.
  expectFirstError(parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata: {name: 42}
)"),
                   3, 18, "metadata.name: expected a string, got an integer (quote it");
  expectFirstError(parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata: {name: a}
spec:
  exec:
    - name: r
      action: kill
      match: [/bin/sh]
)"),
                   8, 14, "spec.exec[0].match: expected a mapping, got a list");
}

TEST(PolicyDocument, RejectsBadEnumValues) {
  const ParseResult r = parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata: {name: a}
spec:
  mode: Enforce
  exec:
    - {name: r, action: deny, match: {uids: [1]}}
)");
  expectFirstError(r, 5, 9, "spec.mode: unknown mode \"Enforce\" (allowed: enforce, audit)");
  ASSERT_EQ(r.errors.size(), 2u);
  EXPECT_EQ(r.errors[1].position.line, 7);
  EXPECT_EQ(r.errors[1].position.column, 25);
  EXPECT_NE(r.errors[1].message.find("unknown action \"deny\" (allowed: kill, audit)"),
            std::string::npos);
}

TEST(PolicyDocument, RejectsMissingFieldsAtTheMappingThatLacksThem) {
  expectFirstError(parse(R"(kind: Policy
metadata: {name: a}
)"),
                   1, 1, "missing required field \"apiVersion\"");
  expectFirstError(parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  labels: {a: b}
)"),
                   4, 3, "metadata: missing required field \"name\"");
  const ParseResult r = parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata: {name: a}
spec:
  exec:
    - mode: audit
)");
  expectFirstError(r, 6, 7, "spec.exec[0]: missing required field \"name\"");
  ASSERT_EQ(r.errors.size(), 3u) << r.errorText();
  EXPECT_NE(r.errors[1].message.find("missing required field \"action\""), std::string::npos);
  EXPECT_NE(r.errors[2].message.find("missing required field \"match\""), std::string::npos);
  // A field written with no value is empty, reported at its key.
  expectFirstError(parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  name:
)"),
                   4, 3, "metadata.name: must not be empty");
}

TEST(PolicyDocument, RejectsBadNames) {
  expectFirstError(parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata: {name: Deny_Tmp}
)"),
                   3, 18, "\"Deny_Tmp\" is not a valid name");
  expectFirstError(parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata: {name: -a}
)"),
                   3, 18, "is not a valid name");
  expectFirstError(parse("apiVersion: vigil.dev/v1alpha1\nkind: Policy\nmetadata: {name: " +
                         std::string(64, 'a') + "}\n"),
                   3, 18, "name is 64 characters, over the limit of 63");
  expectFirstError(parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata: {name: ""}
)"),
                   3, 18, "metadata.name: must not be empty");
}

TEST(PolicyDocument, RejectsEmptyMatch) {
  expectFirstError(parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata: {name: a}
spec:
  exec:
    - name: r
      action: kill
      match: {}
)"),
                   8, 14, "spec.exec[0].match: no conditions");
  expectFirstError(parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata: {name: a}
spec:
  exec:
    - name: r
      action: kill
      match:
        binaries: []
        uids: []
)"),
                   9, 9, "no conditions");
}

TEST(PolicyDocument, RejectsBadPaths) {
  const ParseResult r = parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata: {name: a}
spec:
  exec:
    - name: r
      action: kill
      match:
        binaries: [bin/sh, /usr/bin/]
        pathPrefixes: [/tmp/../etc/, /tmp//x/, "/a\0b", "", /./tmp/]
        parentBinaries: [nginx]
        cgroupPathPrefixes: [kubepods.slice]
)");
  expectFirstError(r, 9, 20, "spec.exec[0].match.binaries[0]: \"bin/sh\" is not an absolute path");
  ASSERT_EQ(r.errors.size(), 9u) << r.errorText();
  EXPECT_EQ(r.errors[1].position.column, 28);
  EXPECT_NE(r.errors[1].message.find("must name a file"), std::string::npos);
  EXPECT_EQ(r.errors[2].position.line, 10);
  EXPECT_EQ(r.errors[2].position.column, 24);
  EXPECT_NE(r.errors[2].message.find("contains a \"..\" component"), std::string::npos);
  EXPECT_NE(r.errors[3].message.find("contains \"//\""), std::string::npos);
  EXPECT_NE(r.errors[4].message.find("contains a NUL character"), std::string::npos);
  EXPECT_EQ(r.errors[4].position.column, 48);
  EXPECT_NE(r.errors[5].message.find("pathPrefixes[3]: must not be empty"), std::string::npos);
  EXPECT_NE(r.errors[6].message.find("contains a \".\" component"), std::string::npos);
  EXPECT_EQ(r.errors[7].position.line, 11);
  EXPECT_NE(r.errors[7].message.find("parentBinaries[0]: \"nginx\" is not an absolute path"),
            std::string::npos);
  EXPECT_EQ(r.errors[8].position.line, 12);
  EXPECT_NE(r.errors[8].message.find("cgroupPathPrefixes[0]"), std::string::npos);
}

TEST(PolicyDocument, RejectsDuplicateRuleName) {
  expectFirstError(parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata: {name: a}
spec:
  exec:
    - name: r
      action: kill
      match: {uids: [1]}
    - name: r
      action: audit
      match: {uids: [2]}
)"),
                   9, 13, "spec.exec[1].name: duplicate rule name \"r\" (first used at line 6)");
}

TEST(PolicyDocument, RejectsDuplicatePolicyName) {
  expectFirstError(parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata: {name: a}
---
apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  name: a
)"),
                   8, 9, "duplicate policy name \"a\" (first used at line 3)");
}

TEST(PolicyDocument, RejectsTooManyRules) {
  std::string text =
      "apiVersion: vigil.dev/v1alpha1\nkind: Policy\nmetadata: {name: a}\nspec:\n"
      "  exec:\n";
  for (size_t i = 0; i <= kMaxRulesPerPolicy; ++i) {
    text += "    - {name: r" + std::to_string(i) + ", action: kill, match: {uids: [1]}}\n";
  }
  const ParseResult r = parse(text);
  expectFirstError(r, 6, 5, "spec.exec: 1025 entries, over the limit of 1024");
  EXPECT_EQ(r.errors.size(), 1u);
}

TEST(PolicyDocument, RejectsTooManyValuesInAList) {
  std::string text =
      "apiVersion: vigil.dev/v1alpha1\nkind: Policy\nmetadata: {name: a}\nspec:\n"
      "  exec:\n    - name: r\n      action: kill\n      match:\n        uids: [";
  for (size_t i = 0; i <= kMaxValuesPerList; ++i) text += std::to_string(i) + ", ";
  text += "]\n";
  expectFirstError(parse(text), 9, 15,
                   "spec.exec[0].match.uids: 257 entries, over the limit of 256");
}

TEST(PolicyDocument, MultipleDocumentsWhereTheSecondIsBadReturnNothing) {
  const ParseResult r = parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata: {name: good}
spec:
  exec:
    - {name: r, action: kill, match: {binaries: [/usr/bin/nc]}}
---
apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata: {name: bad}
spec:
  exec:
    - {name: r, action: kill, match: {binaries: [usr/bin/nc]}}
)");
  expectFirstError(r, 13, 50, "is not an absolute path");
  EXPECT_EQ(r.errors.size(), 1u);
}

TEST(PolicyDocument, CollectsAtMostTenErrors) {
  std::string text =
      "apiVersion: vigil.dev/v1alpha1\nkind: Policy\nmetadata: {name: a}\nspec:\n"
      "  exec:\n    - name: r\n      action: kill\n      match:\n        uids: [";
  for (int i = 0; i < 20; ++i) text += "x, ";
  text += "]\n";
  const ParseResult r = parse(text);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.errors.size(), 10u);
  EXPECT_TRUE(r.policies.empty());
  // errorText() has one line per issue.
  const std::string t = r.errorText();
  EXPECT_EQ(std::count(t.begin(), t.end(), '\n'), 9);
  EXPECT_EQ(t.rfind("test.yaml:9:16: spec.exec[0].match.uids[0]: expected a uid", 0), 0u) << t;
}

// --- Files -----------------------------------------------------------------------------------

TEST(PolicyDocument, RejectsAFileOverTheSizeLimitWithoutParsingIt) {
  TempFile big("# " + std::string(kMaxFileBytes, 'x') + "\n");
  const ParseResult r = parsePolicyFile(big.path());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].position.file, big.path());
  EXPECT_EQ(r.errors[0].position.line, 0);
  EXPECT_NE(r.errors[0].message.find("over the limit of 1048576 bytes"), std::string::npos)
      << r.errorText();
  EXPECT_EQ(r.errorText().rfind(big.path() + ": ", 0), 0u);

  const ParseResult s = parsePolicies(std::string(kMaxFileBytes + 1, '#'), "big");
  ASSERT_EQ(s.errors.size(), 1u);
  EXPECT_NE(s.errors[0].message.find("over the limit"), std::string::npos);
}

TEST(PolicyDocument, ReportsAnUnreadableFileWithErrnoText) {
  const ParseResult r = parsePolicyFile("/nonexistent/vigil/policy.yaml");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].str(),
            "/nonexistent/vigil/policy.yaml: cannot open: No such file or directory");
  const ParseResult d = parsePolicyFile("/tmp");
  ASSERT_EQ(d.errors.size(), 1u);
  EXPECT_NE(d.errors[0].message.find("Is a directory"), std::string::npos);
}

TEST(PolicyDocument, FileErrorsNameTheFile) {
  TempFile bad("apiVersion: vigil.dev/v1alpha1\nkind: Policy\nmetadata: {name: a, x: 1}\n");
  const ParseResult r = parsePolicyFile(bad.path());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].str(),
            bad.path() + ":3:21: metadata: unknown field \"x\" (allowed: name, labels)");
}

}  // namespace
}  // namespace vigil::policy
