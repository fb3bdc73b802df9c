#include "policy/document.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libfyaml.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "common/unique_fd.hpp"

namespace vigil::policy {
namespace {

// ---------------------------------------------------------------------------------------------
// Limits and constants that are private to the parser.

constexpr size_t kMaxErrors = 10;
// Nesting of mappings and lists; the schema itself needs seven levels
// (spec.xdp.rules[].rateLimit.perSourcePrefix).
constexpr size_t kMaxDepth = 64;
// PATH_MAX - 1: a longer path can never be resolved by the kernel, so it could never match.
constexpr size_t kMaxPathLength = 4095;
// (uid_t)-1 means "no uid" to the kernel and can never be a real uid.
constexpr uint64_t kMaxUid = 4294967294u;
constexpr std::string_view kApiVersion = "vigil.dev/v1alpha1";
constexpr std::string_view kKind = "Policy";
constexpr std::string_view kCoreTagPrefix = "tag:yaml.org,2002:";

std::string quoted(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\0') {
      out += "\\0";
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

// "spec" + "exec" -> "spec.exec"; "" + "spec" -> "spec".
std::string fieldPath(const std::string& path, std::string_view field) {
  return path.empty() ? std::string(field) : path + "." + std::string(field);
}

std::string itemPath(const std::string& path, size_t index) {
  return path + "[" + std::to_string(index) + "]";
}

// "spec.mode" -> "spec.mode: "; "" -> "" (messages about the document itself).
std::string prefix(const std::string& path) { return path.empty() ? std::string() : path + ": "; }

// ---------------------------------------------------------------------------------------------
// Issue collection: the first kMaxErrors problems, but every problem is counted.

class Issues {
 public:
  explicit Issues(const std::string& file) : file_(file) {}

  void add(int line, int column, std::string message) {
    ++count_;
    if (issues_.size() < kMaxErrors) {
      issues_.push_back({Position{file_, line, column}, std::move(message)});
    }
  }
  bool full() const { return count_ >= kMaxErrors; }
  size_t count() const { return count_; }
  // In the order of the text, which is how an operator reads them.
  std::vector<ParseIssue> take() {
    std::stable_sort(issues_.begin(), issues_.end(), [](const ParseIssue& a, const ParseIssue& b) {
      return std::pair(a.position.line, a.position.column) <
             std::pair(b.position.line, b.position.column);
    });
    return std::move(issues_);
  }

 private:
  const std::string& file_;
  std::vector<ParseIssue> issues_;
  size_t count_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Input checks that YAML parsers are lax about: NUL bytes (libfyaml stops reading at one without
// saying so) and malformed UTF-8 anywhere, comments included. Columns count code points, as
// libfyaml's do.

bool checkEncoding(const std::string& text, Issues& issues) {
  int line = 1;
  int column = 1;
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c == 0) {
      issues.add(line, column, "the text contains a NUL byte");
      return false;
    }
    size_t len = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      len = 1;
      cp = c;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    }
    bool valid = len != 0 && i + len <= n;
    for (size_t k = 1; valid && k < len; ++k) {
      valid = (p[i + k] & 0xC0) == 0x80;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if (valid) {
      constexpr uint32_t kMinForLength[] = {0, 0, 0x80, 0x800, 0x10000};
      valid = cp >= kMinForLength[len] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    }
    if (!valid) {
      issues.add(line, column, "the text is not valid UTF-8");
      return false;
    }
    i += len;
    if (c == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// A YAML document as a flat tree with positions. libfyaml's document API does not expose where
// a mapping or a list starts, so the tree is built from parser events, which do.

enum class NodeKind { scalar, sequence, mapping };
enum class ScalarType { null, boolean, integer, number, string };

struct Node {
  NodeKind kind = NodeKind::scalar;
  ScalarType type = ScalarType::null;  // scalars only
  int line = 0;                        // 1-based
  int column = 0;                      // 1-based
  // Already reported (alias, anchor, tag, duplicate key): validation skips it without a word.
  bool rejected = false;
  std::string text;                // scalars only
  std::vector<uint32_t> children;  // sequence: items; mapping: key, value, key, value, ...
};

struct Tree {
  std::vector<Node> nodes;
  uint32_t root = 0;
};

bool isNull(const Node& n) {
  return n.kind == NodeKind::scalar && n.type == ScalarType::null && !n.rejected;
}

std::string describe(const Node& n) {
  switch (n.kind) {
    case NodeKind::mapping:
      return "a mapping";
    case NodeKind::sequence:
      return "a list";
    case NodeKind::scalar:
      break;
  }
  switch (n.type) {
    case ScalarType::null:
      return "nothing (null)";
    case ScalarType::boolean:
      return "a boolean";
    case ScalarType::integer:
      return "an integer";
    case ScalarType::number:
      return "a number";
    case ScalarType::string:
      return "a string";
  }
  return "something else";
}

bool allOf(std::string_view s, bool (*pred)(char)) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!pred(c)) return false;
  }
  return true;
}
bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isOctal(char c) { return c >= '0' && c <= '7'; }
bool isHex(char c) { return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

bool looksLikeInteger(std::string_view s) {
  if (s.starts_with("0o")) return allOf(s.substr(2), isOctal);
  if (s.starts_with("0x")) return allOf(s.substr(2), isHex);
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  return allOf(s, isDigit);
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? and the .inf/.nan spellings.
bool looksLikeNumber(std::string_view s) {
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  if (s == ".inf" || s == ".Inf" || s == ".INF" || s == ".nan" || s == ".NaN" || s == ".NAN") {
    return true;
  }
  size_t i = 0;
  size_t digits = 0;
  auto skipDigits = [&] {
    while (i < s.size() && isDigit(s[i])) {
      ++i;
      ++digits;
    }
  };
  skipDigits();
  if (i < s.size() && s[i] == '.') {
    ++i;
    skipDigits();
  }
  if (digits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    if (!allOf(s.substr(i), isDigit)) return false;
    i = s.size();
  }
  return i == s.size();
}

// The YAML 1.2 core schema, applied to plain (unquoted, untagged) scalars.
ScalarType resolvePlain(std::string_view s) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return ScalarType::null;
  if (s == "true" || s == "True" || s == "TRUE" || s == "false" || s == "False" || s == "FALSE") {
    return ScalarType::boolean;
  }
  if (looksLikeInteger(s)) return ScalarType::integer;
  if (looksLikeNumber(s)) return ScalarType::number;
  return ScalarType::string;
}

struct FyDiagDeleter {
  void operator()(fy_diag* d) const { fy_diag_destroy(d); }
};
struct FyParserDeleter {
  void operator()(fy_parser* p) const { fy_parser_destroy(p); }
};

void discardDiagOutput(fy_diag*, void*, const char*, size_t) {}

// Reads the documents of a YAML stream, one Tree at a time, reporting YAML-level problems:
// syntax errors (with libfyaml's own position and text), anchors, aliases, tags, duplicate and
// merge keys, and nesting that is too deep.
class StreamReader {
 public:
  StreamReader(const std::string& text, Issues& issues) : text_(text), issues_(issues) {}

  // Calls onDocument(const Tree&) for every complete document. Returns false when the stream
  // could not be read to its end.
  template <typename OnDocument>
  bool read(OnDocument&& onDocument) {
    fy_diag_cfg dcfg;
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = nullptr;
    dcfg.output_fn = discardDiagOutput;
    dcfg.level = FYET_ERROR;
    dcfg.colorize = false;
    std::unique_ptr<fy_diag, FyDiagDeleter> diag(fy_diag_create(&dcfg));
    if (!diag) {
      issues_.add(0, 0, "cannot create the YAML diagnostics object");
      return false;
    }
    fy_diag_set_collect_errors(diag.get(), true);

    fy_parse_cfg cfg{};
    cfg.flags =
        static_cast<fy_parse_cfg_flags>(FYPCF_QUIET | FYPCF_DEFAULT_VERSION_1_2 | FYPCF_JSON_NONE);
    cfg.diag = diag.get();
    std::unique_ptr<fy_parser, FyParserDeleter> parser(fy_parser_create(&cfg));
    if (!parser || fy_parser_set_string(parser.get(), text_.data(), text_.size()) != 0) {
      issues_.add(0, 0, "cannot create the YAML parser");
      return false;
    }

    while (!stop_) {
      fy_event* event = fy_parser_parse(parser.get());
      if (event == nullptr) break;
      handle(event, onDocument);
      fy_parser_event_free(parser.get(), event);
    }
    if (stop_) return false;
    if (fy_parser_get_stream_error(parser.get())) {
      reportSyntaxErrors(diag.get());
      return false;
    }
    return true;
  }

 private:
  template <typename OnDocument>
  void handle(fy_event* event, OnDocument& onDocument) {
    switch (event->type) {
      case FYET_DOCUMENT_START:
        tree_ = Tree{};
        stack_.clear();
        haveRoot_ = false;
        break;
      case FYET_DOCUMENT_END:
        if (haveRoot_) onDocument(static_cast<const Tree&>(tree_));
        if (issues_.full()) stop_ = true;
        break;
      case FYET_MAPPING_START:
      case FYET_SEQUENCE_START: {
        const bool mapping = event->type == FYET_MAPPING_START;
        const uint32_t index =
            addNode(event, mapping ? NodeKind::mapping : NodeKind::sequence, std::string());
        if (stack_.size() >= kMaxDepth) {
          const Node& n = tree_.nodes[index];
          issues_.add(n.line, n.column,
                      "nesting is deeper than " + std::to_string(kMaxDepth) + " levels");
          stop_ = true;
        }
        stack_.push_back(index);
        break;
      }
      case FYET_MAPPING_END:
        if (!stack_.empty()) {
          checkKeys(stack_.back());
          stack_.pop_back();
        }
        break;
      case FYET_SEQUENCE_END:
        if (!stack_.empty()) stack_.pop_back();
        break;
      case FYET_SCALAR: {
        size_t len = 0;
        const char* text = fy_token_get_text(event->scalar.value, &len);
        addNode(event, NodeKind::scalar, std::string(text != nullptr ? text : "", len));
        break;
      }
      case FYET_ALIAS: {
        const uint32_t index = addNode(event, NodeKind::scalar, std::string());
        Node& n = tree_.nodes[index];
        n.rejected = true;
        // The mark points after the '*'.
        if (n.column > 1) --n.column;
        issues_.add(n.line, n.column,
                    "aliases are not supported (*" + tokenText(event->alias.anchor) +
                        "); write the value out in full");
        break;
      }
      default:
        break;
    }
  }

  static std::string tokenText(fy_token* token) {
    size_t len = 0;
    const char* text = token != nullptr ? fy_token_get_text(token, &len) : nullptr;
    return text != nullptr ? std::string(text, len) : std::string();
  }

  // 0-based libfyaml mark -> 1-based line and column; nodes without a mark (an empty value)
  // take the position of whatever came just before them.
  void markPosition(const fy_mark* mark, int& line, int& column) {
    if (mark != nullptr && mark->line >= 0 && mark->column >= 0) {
      lastLine_ = mark->line + 1;
      lastColumn_ = mark->column + 1;
    }
    line = lastLine_;
    column = lastColumn_;
  }

  uint32_t addNode(fy_event* event, NodeKind kind, std::string text) {
    Node n;
    n.kind = kind;
    n.text = std::move(text);
    markPosition(fy_event_start_mark(event), n.line, n.column);

    bool quotedScalar = false;
    bool plainScalar = false;
    if (kind == NodeKind::scalar && event->type == FYET_SCALAR) {
      const fy_node_style style = fy_event_get_node_style(event);
      quotedScalar = style == FYNS_SINGLE_QUOTED || style == FYNS_DOUBLE_QUOTED;
      plainScalar = style == FYNS_PLAIN || style == FYNS_ANY;
      // The mark points at the first character inside the quotes; show the quote.
      if (quotedScalar && n.column > 1) --n.column;
      n.type = plainScalar ? resolvePlain(n.text) : ScalarType::string;
    }

    if (event->type != FYET_ALIAS) {
      if (fy_token* anchor = fy_event_get_anchor_token(event)) {
        int line = 0;
        int column = 0;
        markPosition(fy_token_start_mark(anchor), line, column);
        // The mark points after the '&'.
        issues_.add(
            line, column > 1 ? column - 1 : column,
            "anchors are not supported (&" + tokenText(anchor) + "); write the value out in full");
        n.rejected = true;
      }
      if (fy_token* tag = fy_event_get_tag_token(event)) applyTag(tag, n);
    }

    const auto index = static_cast<uint32_t>(tree_.nodes.size());
    tree_.nodes.push_back(std::move(n));
    if (stack_.empty()) {
      tree_.root = index;
      haveRoot_ = true;
    } else {
      tree_.nodes[stack_.back()].children.push_back(index);
    }
    return index;
  }

  // Only the default tags are allowed, and only where they say what the node already is:
  // "!" and !!str on scalars, !!int on integers, !!map on mappings and !!seq on lists.
  void applyTag(fy_token* tag, Node& n) {
    const std::string text = tokenText(tag);
    int line = 0;
    int column = 0;
    markPosition(fy_token_start_mark(tag), line, column);
    std::string shown = text;
    std::string_view core;
    if (std::string_view(text).starts_with(kCoreTagPrefix)) {
      core = std::string_view(text).substr(kCoreTagPrefix.size());
      shown = "!!" + std::string(core);
    }
    bool fits = false;
    if (text == "!") {
      fits = true;
      if (n.kind == NodeKind::scalar) n.type = ScalarType::string;
    } else if (core == "str") {
      fits = n.kind == NodeKind::scalar;
      n.type = ScalarType::string;
    } else if (core == "int") {
      fits = n.kind == NodeKind::scalar && looksLikeInteger(n.text);
      n.type = ScalarType::integer;
    } else if (core == "map") {
      fits = n.kind == NodeKind::mapping;
    } else if (core == "seq") {
      fits = n.kind == NodeKind::sequence;
    } else {
      issues_.add(line, column,
                  "tag " + shown + " is not supported; only !!str, !!int, !!map and !!seq are");
      n.rejected = true;
      return;
    }
    if (!fits) {
      issues_.add(line, column, "tag " + shown + " does not fit this value");
      n.rejected = true;
    }
  }

  // Keys must be scalars, unique within their mapping, and not the YAML 1.1 merge key.
  void checkKeys(uint32_t mappingIndex) {
    std::unordered_map<std::string_view, uint32_t> seen;
    const std::vector<uint32_t>& children = tree_.nodes[mappingIndex].children;
    for (size_t i = 0; i + 1 < children.size(); i += 2) {
      Node& key = tree_.nodes[children[i]];
      if (key.rejected) continue;
      if (key.kind != NodeKind::scalar) {
        issues_.add(key.line, key.column, "mapping keys must be strings, not " + describe(key));
        key.rejected = true;
        continue;
      }
      if (key.text == "<<" && key.type == ScalarType::string) {
        issues_.add(key.line, key.column, "merge keys (<<) are not supported");
        key.rejected = true;
        continue;
      }
      auto [it, inserted] = seen.emplace(key.text, children[i]);
      if (!inserted) {
        const Node& first = tree_.nodes[it->second];
        issues_.add(key.line, key.column,
                    "duplicate key " + quoted(key.text) + " (first at line " +
                        std::to_string(first.line) + ", column " + std::to_string(first.column) +
                        ")");
        key.rejected = true;
      }
    }
  }

  void reportSyntaxErrors(fy_diag* diag) {
    const size_t before = issues_.count();
    void* iter = nullptr;
    std::string lastMessage;
    while (fy_diag_error* err = fy_diag_errors_iterate(diag, &iter)) {
      if (err->type < FYET_ERROR) continue;
      std::string message = "syntax error: ";
      message += err->msg != nullptr ? err->msg : "malformed YAML";
      if (message == lastMessage) continue;
      lastMessage = message;
      // libfyaml's diagnostics are already 1-based.
      issues_.add(err->line > 0 ? err->line : lastLine_, err->line > 0 ? err->column : lastColumn_,
                  message);
    }
    if (issues_.count() == before) issues_.add(lastLine_, lastColumn_, "syntax error");
  }

  const std::string& text_;
  Issues& issues_;
  Tree tree_;
  std::vector<uint32_t> stack_;
  bool haveRoot_ = false;
  bool stop_ = false;
  int lastLine_ = 1;
  int lastColumn_ = 1;
};

// ---------------------------------------------------------------------------------------------
// spec.xdp, the XDP packet filter. What the reader accepts, with defaults and limits:
//
//   spec:
//     xdp:
//       interfaces: [eth0, veth1]  # optional; omitted: every interface but loopback, including
//                                  # ones that appear later. 1..kMaxValuesPerList names.
//       rules:                     # required, 1..kMaxRulesPerPolicy rules
//         - name: block-scanners   # required; a DNS-1123 label, unique among spec.xdp.rules
//           action: drop           # drop (default) | pass
//           mode: audit            # enforce | audit; default: spec.mode
//           match:                 # required unless rateLimit is set; >= 1 condition
//             sourceCIDRs: [203.0.113.0/24, "2001:db8::/32", 198.51.100.7]
//             destinationCIDRs: [10.0.0.0/8]
//             protocol: tcp        # tcp | udp | icmp | icmpv6
//             destinationPorts: [22, 443, "8000-8080"]  # needs tcp, udp or no protocol
//           rateLimit:             # optional, not with action pass
//             packetsPerSecond: 1000  # required, 1..kMaxPacketsPerSecond
//             burst: 200              # optional, 1..kMaxBurst; the model keeps 0 when omitted
//             perSourcePrefix:        # optional: one bucket per source block of this size
//               ipv4: 32              # 0..32, default 32 (0: one bucket for every source)
//               ipv6: 64              # 0..128, default 64
//
// Lists (interfaces, CIDRs, ports) are OR'ed inside themselves; the conditions a match sets
// are AND'ed. CIDR and port lists hold 1..kMaxXdpListValues entries. Unlike spec.exec, a list
// or mapping that is written in spec.xdp must not be null or empty: there, "nothing" would
// widen a drop rule to every packet or every interface, so the operator must omit the field
// to say that. Scalars (action, mode, protocol, burst, ipv4, ipv6) may be null to mean unset.
// Contradictions that can never match a packet (an IPv4-only source with an IPv6-only
// destination, icmp with IPv6 blocks only, ports with icmp) are errors, not silent no-ops.

constexpr uint64_t kMaxPacketsPerSecond = 100'000'000;
constexpr uint64_t kMaxBurst = 1'000'000'000;
constexpr uint64_t kMaxPort = 65535;
// ::ffff:0:0/96, the block that holds IPv4 addresses inside IPv6.
constexpr std::array<uint8_t, 12> kV4MappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

// Clears every bit of `addr` after the first `bits`.
std::array<uint8_t, 16> masked(std::array<uint8_t, 16> addr, int bits) {
  for (int i = 0; i < 16; ++i) {
    const int keep = std::clamp(bits - 8 * i, 0, 8);
    addr[i] &= static_cast<uint8_t>(0xff00 >> keep);
  }
  return addr;
}

// A decimal number without sign or leading zero, up to `maxDigits` digits.
std::optional<uint32_t> plainDecimal(std::string_view s, size_t maxDigits) {
  if (!allOf(s, isDigit) || s.size() > maxDigits || (s.size() > 1 && s.front() == '0')) {
    return std::nullopt;
  }
  uint32_t value = 0;
  for (char c : s) value = value * 10 + static_cast<uint32_t>(c - '0');
  return value;
}

// "443" or "8000-8080" -> a PortRange (without position), or nothing with `why`.
std::optional<PortRange> parsePortRange(std::string_view text, std::string& why) {
  const size_t dash = text.find('-');
  const std::string_view loText = text.substr(0, dash);
  const std::string_view hiText = dash == std::string_view::npos ? loText : text.substr(dash + 1);
  const std::optional<uint32_t> lo = plainDecimal(loText, 5);
  const std::optional<uint32_t> hi = plainDecimal(hiText, 5);
  if (!lo || !hi || *lo < 1 || *hi > kMaxPort) {
    why = "is not a port or a port range (allowed: N or lo-hi, decimal, 1 <= lo <= hi <= " +
          std::to_string(kMaxPort) + ", no sign, spaces or leading zeros)";
    return std::nullopt;
  }
  if (*lo > *hi) {
    why = "is a backwards range (lo must not be over hi: write " + std::to_string(*hi) + "-" +
          std::to_string(*lo) + ")";
    return std::nullopt;
  }
  return PortRange{static_cast<uint16_t>(*lo), static_cast<uint16_t>(*hi), {}};
}

// The kernel's dev_valid_name(): what is wrong with `name` as an interface name, or "".
// Its isspace() also counts byte 0xa0 (no-break space in Latin-1).
std::string interfaceNameProblem(const std::string& name) {
  if (name.size() > kMaxInterfaceNameLength) {
    return "is " + std::to_string(name.size()) + " bytes long, over the limit of " +
           std::to_string(kMaxInterfaceNameLength) + " for an interface name";
  }
  if (name == "." || name == "..") {
    return "is not a valid interface name (\".\" and \"..\" are reserved)";
  }
  for (char c : name) {
    if (c == '\0') return "contains a NUL character";
    if (c == '/' || c == ':') {
      return std::string("contains '") + c + "', which interface names cannot";
    }
    if (c == ' ' || (c >= '\t' && c <= '\r') || static_cast<unsigned char>(c) == 0xa0) {
      return "contains whitespace, which interface names cannot";
    }
  }
  return "";
}

// ---------------------------------------------------------------------------------------------
// Tree -> Policy, with the schema's rules.

bool isNameChar(char c) { return (c >= 'a' && c <= 'z') || isDigit(c) || c == '-'; }

class PolicyReader {
 public:
  PolicyReader(const Tree& tree, const std::string& file, Issues& issues)
      : tree_(tree), file_(file), issues_(issues) {}

  // The policy, or nothing when the document has any error (all of them reported).
  std::optional<Policy> read() {
    const size_t before = issues_.count();
    Policy policy;
    readDocument(policy);
    if (issues_.count() != before) return std::nullopt;
    return policy;
  }

  // metadata.name and where it was written, when the document got that far.
  const std::string& name() const { return name_; }
  const Node* nameNode() const { return nameNode_; }

 private:
  struct Field {
    std::string_view name;
    const Node* key;
    const Node* value;
  };
  using Fields = std::vector<Field>;

  const Node& node(uint32_t index) const { return tree_.nodes[index]; }

  void error(const Node& at, const std::string& path, const std::string& message) {
    issues_.add(at.line, at.column, prefix(path) + message);
  }

  static std::string joinNames(std::initializer_list<std::string_view> names) {
    std::string out;
    for (std::string_view n : names) {
      if (!out.empty()) out += ", ";
      out += n;
    }
    return out;
  }

  // The fields of a mapping, reporting those the schema does not know.
  Fields fieldsOf(const Node& mapping, const std::string& path,
                  std::initializer_list<std::string_view> allowed) {
    Fields fields;
    for (size_t i = 0; i + 1 < mapping.children.size(); i += 2) {
      const Node& key = node(mapping.children[i]);
      const Node& value = node(mapping.children[i + 1]);
      if (key.rejected) continue;
      bool known = false;
      for (std::string_view a : allowed) known = known || key.text == a;
      if (!known) {
        error(key, path,
              "unknown field " + quoted(key.text) + " (allowed: " + joinNames(allowed) + ")");
        continue;
      }
      fields.push_back({key.text, &key, &value});
    }
    return fields;
  }

  static const Field* find(const Fields& fields, std::string_view name) {
    for (const Field& f : fields) {
      if (f.name == name) return &f;
    }
    return nullptr;
  }

  // A string field. Unset (absent or null) is fine when optional; "" never is.
  std::optional<std::string> stringField(const Node& mapping, const Fields& fields,
                                         const std::string& path, std::string_view name,
                                         bool required) {
    const Field* f = find(fields, name);
    const std::string at = fieldPath(path, name);
    if (f == nullptr) {
      if (required) error(mapping, path, "missing required field " + quoted(name));
      return std::nullopt;
    }
    if (isNull(*f->value)) {
      if (required) error(*f->key, at, "must not be empty");
      return std::nullopt;
    }
    return stringValue(*f->value, at);
  }

  std::optional<std::string> stringValue(const Node& value, const std::string& path) {
    if (value.rejected) return std::nullopt;
    if (value.kind != NodeKind::scalar || value.type != ScalarType::string) {
      std::string message = "expected a string, got " + describe(value);
      if (value.kind == NodeKind::scalar && value.type != ScalarType::null) {
        message += " (quote it to make it a string)";
      }
      error(value, path, message);
      return std::nullopt;
    }
    if (value.text.empty()) {
      error(value, path, "must not be empty");
      return std::nullopt;
    }
    return value.text;
  }

  // A mapping field: nullptr when unset (or wrong, which is reported).
  const Node* mappingField(const Node& mapping, const Fields& fields, const std::string& path,
                           std::string_view name, bool required) {
    const Field* f = find(fields, name);
    const std::string at = fieldPath(path, name);
    if (f == nullptr) {
      if (required) error(mapping, path, "missing required field " + quoted(name));
      return nullptr;
    }
    if (isNull(*f->value)) {
      if (required) error(*f->key, at, "must not be empty");
      return nullptr;
    }
    if (f->value->rejected) return nullptr;
    if (f->value->kind != NodeKind::mapping) {
      error(*f->value, at, "expected a mapping, got " + describe(*f->value));
      return nullptr;
    }
    return f->value;
  }

  // An optional list field, within `limit` entries: nullptr when unset (or wrong).
  const Node* listField(const Fields& fields, const std::string& path, std::string_view name,
                        size_t limit) {
    const Field* f = find(fields, name);
    if (f == nullptr || isNull(*f->value) || f->value->rejected) return nullptr;
    const std::string at = fieldPath(path, name);
    if (f->value->kind != NodeKind::sequence) {
      error(*f->value, at, "expected a list, got " + describe(*f->value));
      return nullptr;
    }
    if (f->value->children.size() > limit) {
      error(*f->value, at,
            std::to_string(f->value->children.size()) + " entries, over the limit of " +
                std::to_string(limit));
      return nullptr;
    }
    return f->value;
  }

  bool checkName(const Node& at, const std::string& path, const std::string& name) {
    if (name.size() > kMaxNameLength) {
      error(at, path,
            "name is " + std::to_string(name.size()) + " characters, over the limit of " +
                std::to_string(kMaxNameLength));
      return false;
    }
    const bool valid = allOf(name, isNameChar) && name.front() != '-' && name.back() != '-';
    if (!valid) {
      error(at, path,
            quoted(name) +
                " is not a valid name: use lowercase letters, digits and '-', starting and "
                "ending with a letter or digit (a DNS-1123 label)");
      return false;
    }
    return true;
  }

  // An absolute, normalised path. A file (binaries, parentBinaries) may not end in '/'.
  bool checkPath(const Node& at, const std::string& path, const std::string& value, bool file) {
    auto fail = [&](const std::string& why) {
      error(at, path, quoted(value) + " " + why);
      return false;
    };
    if (value.find('\0') != std::string::npos) return fail("contains a NUL character");
    for (char c : value) {
      // A newline from a block scalar ("|") would make the path silently never match.
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
        return fail("contains a control character");
      }
    }
    if (value.front() != '/') return fail("is not an absolute path (it must start with '/')");
    if (value.size() > kMaxPathLength) {
      return fail("is " + std::to_string(value.size()) + " bytes long, over the limit of " +
                  std::to_string(kMaxPathLength));
    }
    if (value.find("//") != std::string::npos) return fail("contains \"//\"");
    size_t start = 1;
    while (start <= value.size()) {
      size_t end = value.find('/', start);
      if (end == std::string::npos) end = value.size();
      const std::string_view component(value.data() + start, end - start);
      if (component == "..") return fail("contains a \"..\" component");
      if (component == ".") return fail("contains a \".\" component");
      start = end + 1;
    }
    if (file && value.back() == '/') {
      return fail("ends in '/' but must name a file (use pathPrefixes for a directory)");
    }
    return true;
  }

  void readPaths(const Fields& fields, const std::string& path, std::string_view name, bool file,
                 std::vector<std::string>& values, std::vector<Position>* positions) {
    const Node* list = listField(fields, path, name, kMaxValuesPerList);
    if (list == nullptr) return;
    const std::string listPath = fieldPath(path, name);
    for (size_t i = 0; i < list->children.size(); ++i) {
      const Node& item = node(list->children[i]);
      const std::string at = itemPath(listPath, i);
      std::optional<std::string> value = stringValue(item, at);
      if (!value || !checkPath(item, at, *value, file)) continue;
      values.push_back(std::move(*value));
      if (positions != nullptr) positions->push_back(Position{file_, item.line, item.column});
    }
  }

  void readUids(const Fields& fields, const std::string& path, std::vector<uint32_t>& uids) {
    const Node* list = listField(fields, path, "uids", kMaxValuesPerList);
    if (list == nullptr) return;
    const std::string listPath = fieldPath(path, "uids");
    const std::string expected = "a uid (an integer 0.." + std::to_string(kMaxUid) + ")";
    for (size_t i = 0; i < list->children.size(); ++i) {
      const Node& item = node(list->children[i]);
      if (auto value = integerValue(item, itemPath(listPath, i), "uid", expected, 0, kMaxUid)) {
        uids.push_back(static_cast<uint32_t>(*value));
      }
    }
  }

  // An integer min..max written as a plain decimal YAML integer. Floats, booleans, quoted
  // numbers, signs, hex, octal and leading zeros are errors; `noun` names the value in messages
  // ("uid 010 has a leading zero") and `expected` describes what is allowed.
  std::optional<uint64_t> integerValue(const Node& item, const std::string& at,
                                       std::string_view noun, std::string_view expected,
                                       uint64_t min, uint64_t max) {
    if (item.rejected) return std::nullopt;
    if (item.kind != NodeKind::scalar || item.type != ScalarType::integer) {
      std::string message = "expected " + std::string(expected) + ", got " + describe(item);
      if (item.kind == NodeKind::scalar && item.type == ScalarType::string &&
          allOf(item.text, isDigit)) {
        message += " (remove the quotes)";
      }
      error(item, at, message);
      return std::nullopt;
    }
    const std::string& t = item.text;
    const std::string name(noun);
    if (t.front() == '-') {
      error(item, at, name + " " + t + " is negative");
      return std::nullopt;
    }
    if (!allOf(t, isDigit)) {
      error(item, at, "write " + name + " values as plain decimal numbers, got " + t);
      return std::nullopt;
    }
    if (t.size() > 1 && t.front() == '0') {
      error(item, at, name + " " + t + " has a leading zero (ambiguous: octal in YAML 1.1)");
      return std::nullopt;
    }
    // 19 digits always fit in 64 bits; every limit here is far below that.
    uint64_t value = 0;
    const bool tooLarge = t.size() > 19;
    for (size_t k = 0; !tooLarge && k < t.size(); ++k) value = value * 10 + (t[k] - '0');
    if (tooLarge || value > max) {
      error(item, at, name + " " + t + " is over the maximum of " + std::to_string(max));
      return std::nullopt;
    }
    if (value < min) {
      error(item, at, name + " " + t + " is under the minimum of " + std::to_string(min));
      return std::nullopt;
    }
    return value;
  }

  void readDocument(Policy& policy) {
    const Node& root = node(tree_.root);
    if (root.rejected) return;
    if (root.kind != NodeKind::mapping) {
      error(root, "", "a policy document must be a mapping, got " + describe(root));
      return;
    }
    policy.position = Position{file_, root.line, root.column};
    const Fields fields = fieldsOf(root, "", {"apiVersion", "kind", "metadata", "spec"});

    if (auto v = stringField(root, fields, "", "apiVersion", true); v && *v != kApiVersion) {
      error(*find(fields, "apiVersion")->value, "apiVersion",
            "unsupported value " + quoted(*v) + "; expected " + quoted(kApiVersion));
    }
    if (auto v = stringField(root, fields, "", "kind", true); v && *v != kKind) {
      error(*find(fields, "kind")->value, "kind",
            "unsupported value " + quoted(*v) + "; expected " + quoted(kKind));
    }

    if (const Node* metadata = mappingField(root, fields, "", "metadata", true)) {
      readMetadata(*metadata, policy);
    }
    if (const Node* spec = mappingField(root, fields, "", "spec", false)) {
      readSpec(*spec, policy);
    }
  }

  void readMetadata(const Node& metadata, Policy& policy) {
    const std::string path = "metadata";
    const Fields fields = fieldsOf(metadata, path, {"name", "labels"});
    if (auto name = stringField(metadata, fields, path, "name", true)) {
      const Node& at = *find(fields, "name")->value;
      if (checkName(at, "metadata.name", *name)) {
        policy.name = *name;
        name_ = *name;
        nameNode_ = &at;
      }
    }
    // Labels are free-form and ignored, but they must still be strings.
    if (const Node* labels = mappingField(metadata, fields, path, "labels", false)) {
      for (size_t i = 0; i + 1 < labels->children.size(); i += 2) {
        const Node& key = node(labels->children[i]);
        const Node& value = node(labels->children[i + 1]);
        if (key.rejected || value.rejected) continue;
        if (value.kind != NodeKind::scalar || value.type != ScalarType::string) {
          error(value, "metadata.labels." + key.text,
                "expected a string, got " + describe(value) +
                    (value.kind == NodeKind::scalar ? " (quote it)" : ""));
        }
      }
    }
  }

  void readSpec(const Node& spec, Policy& policy) {
    const std::string path = "spec";
    const Fields fields = fieldsOf(spec, path, {"mode", "exec", "xdp"});
    if (auto mode = stringField(spec, fields, path, "mode", false)) {
      if (auto m = parseMode(*mode, *find(fields, "mode")->value, "spec.mode")) policy.mode = *m;
    }
    if (const Node* rules = listField(fields, path, "exec", kMaxRulesPerPolicy)) {
      readExecRules(*rules, policy);
    }
    if (const Field* xdp = find(fields, "xdp")) readXdp(*xdp, policy);
  }

  // A list of rules (exec or XDP): each a mapping read by readOne(item, path, rule, nameNode),
  // with names unique in the list.
  template <typename Rule, typename ReadOne>
  void readRuleList(const Node& rules, const std::string& path, std::vector<Rule>& out,
                    ReadOne readOne) {
    // Rule name -> the node that first used it.
    std::unordered_map<std::string, const Node*> names;
    for (size_t i = 0; i < rules.children.size(); ++i) {
      const Node& item = node(rules.children[i]);
      const std::string rulePath = itemPath(path, i);
      if (item.rejected) continue;
      if (item.kind != NodeKind::mapping) {
        error(item, rulePath, "expected a mapping (a rule), got " + describe(item));
        continue;
      }
      Rule rule;
      const Node* nameNode = nullptr;
      readOne(item, rulePath, rule, nameNode);
      if (nameNode == nullptr) continue;
      auto [it, inserted] = names.emplace(rule.name, nameNode);
      if (!inserted) {
        error(*nameNode, fieldPath(rulePath, "name"),
              "duplicate rule name " + quoted(rule.name) + " (first used at line " +
                  std::to_string(it->second->line) + ")");
        continue;
      }
      out.push_back(std::move(rule));
    }
  }

  void readExecRules(const Node& rules, Policy& policy) {
    readRuleList(rules, "spec.exec", policy.exec,
                 [this](const Node& item, const std::string& p, ExecRule& r, const Node*& n) {
                   readRule(item, p, r, n);
                 });
  }

  std::optional<Mode> parseMode(const std::string& value, const Node& at, const std::string& path) {
    if (value == "enforce") return Mode::enforce;
    if (value == "audit") return Mode::audit;
    error(at, path, "unknown mode " + quoted(value) + " (allowed: enforce, audit)");
    return std::nullopt;
  }

  void readRule(const Node& mapping, const std::string& path, ExecRule& rule,
                const Node*& nameNode) {
    rule.position = Position{file_, mapping.line, mapping.column};
    const Fields fields = fieldsOf(mapping, path, {"name", "action", "mode", "match"});
    if (auto name = stringField(mapping, fields, path, "name", true)) {
      const Node& at = *find(fields, "name")->value;
      if (checkName(at, fieldPath(path, "name"), *name)) {
        rule.name = *name;
        nameNode = &at;
      }
    }
    if (auto action = stringField(mapping, fields, path, "action", true)) {
      if (*action == "kill") {
        rule.action = ExecAction::kill;
      } else if (*action == "audit") {
        rule.action = ExecAction::audit;
      } else {
        error(*find(fields, "action")->value, fieldPath(path, "action"),
              "unknown action " + quoted(*action) + " (allowed: kill, audit)");
      }
    }
    if (auto mode = stringField(mapping, fields, path, "mode", false)) {
      rule.mode = parseMode(*mode, *find(fields, "mode")->value, fieldPath(path, "mode"));
    }
    if (const Node* match = mappingField(mapping, fields, path, "match", true)) {
      readMatch(*match, fieldPath(path, "match"), rule.match);
    }
  }

  void readMatch(const Node& mapping, const std::string& path, ExecMatch& match) {
    const size_t before = issues_.count();
    const Fields fields =
        fieldsOf(mapping, path,
                 {"binaries", "pathPrefixes", "parentBinaries", "uids", "cgroupPathPrefixes"});
    readPaths(fields, path, "binaries", true, match.binaries, &match.binaryPositions);
    readPaths(fields, path, "pathPrefixes", false, match.pathPrefixes, nullptr);
    readPaths(fields, path, "parentBinaries", true, match.parentBinaries,
              &match.parentBinaryPositions);
    readUids(fields, path, match.uids);
    readPaths(fields, path, "cgroupPathPrefixes", false, match.cgroupPathPrefixes, nullptr);
    // An empty match would select every exec on the node; when a list was wrong it has been
    // reported already, so do not pile on.
    if (match.empty() && issues_.count() == before) {
      error(mapping, path,
            "no conditions: set at least one of binaries, pathPrefixes, parentBinaries, uids, "
            "cgroupPathPrefixes to a non-empty list");
    }
  }

  // --- spec.xdp (the schema is at the top of the xdp helpers, above) -------------------------

  // A list that, when written, must hold at least one entry (see the schema comment for why);
  // nullptr when absent or wrong (reported). `hint` says what to do instead of emptying it.
  const Node* nonEmptyListField(const Fields& fields, const std::string& path,
                                std::string_view name, size_t limit, std::string_view hint) {
    const Field* f = find(fields, name);
    if (f == nullptr || f->value->rejected) return nullptr;
    const std::string at = fieldPath(path, name);
    if (isNull(*f->value)) {
      error(*f->key, at, "must not be empty; " + std::string(hint));
      return nullptr;
    }
    const Node* list = listField(fields, path, name, limit);
    if (list != nullptr && list->children.empty()) {
      error(*list, at, "must not be empty; " + std::string(hint));
      return nullptr;
    }
    return list;
  }

  // A mapping that, when written, must not be null; nullptr when absent or wrong (reported).
  // An empty mapping ({}) is returned: what it lacks is the caller's to say.
  const Node* writtenMappingField(const Fields& fields, const std::string& path,
                                  std::string_view name, std::string_view hint) {
    const Field* f = find(fields, name);
    if (f == nullptr || f->value->rejected) return nullptr;
    const std::string at = fieldPath(path, name);
    if (isNull(*f->value)) {
      error(*f->key, at, "must not be empty; " + std::string(hint));
      return nullptr;
    }
    if (f->value->kind != NodeKind::mapping) {
      error(*f->value, at, "expected a mapping, got " + describe(*f->value));
      return nullptr;
    }
    return f->value;
  }

  // An integer field; unset (absent or null) is fine when optional.
  std::optional<uint64_t> integerField(const Node& mapping, const Fields& fields,
                                       const std::string& path, std::string_view name,
                                       bool required, uint64_t min, uint64_t max) {
    const Field* f = find(fields, name);
    const std::string at = fieldPath(path, name);
    if (f == nullptr) {
      if (required) error(mapping, path, "missing required field " + quoted(name));
      return std::nullopt;
    }
    if (isNull(*f->value)) {
      if (required) error(*f->key, at, "must not be empty");
      return std::nullopt;
    }
    const std::string expected = "an integer " + std::to_string(min) + ".." + std::to_string(max);
    return integerValue(*f->value, at, name, expected, min, max);
  }

  void readXdp(const Field& field, Policy& policy) {
    const std::string path = "spec.xdp";
    const Node& mapping = *field.value;
    if (mapping.rejected) return;
    if (isNull(mapping)) {
      error(*field.key, path, "must not be empty; remove spec.xdp or add a rule");
      return;
    }
    if (mapping.kind != NodeKind::mapping) {
      error(mapping, path, "expected a mapping, got " + describe(mapping));
      return;
    }
    XdpSpec xdp;
    xdp.position = Position{file_, mapping.line, mapping.column};
    const Fields fields = fieldsOf(mapping, path, {"interfaces", "rules"});
    readInterfaces(fields, path, xdp);
    if (find(fields, "rules") == nullptr) {
      error(mapping, path, "missing required field \"rules\"; remove spec.xdp or add a rule");
    } else if (const Node* rules = nonEmptyListField(fields, path, "rules", kMaxRulesPerPolicy,
                                                     "remove spec.xdp or add a rule")) {
      readXdpRules(*rules, fieldPath(path, "rules"), xdp.rules);
    }
    policy.xdp = std::move(xdp);
  }

  void readInterfaces(const Fields& fields, const std::string& path, XdpSpec& xdp) {
    const Node* list =
        nonEmptyListField(fields, path, "interfaces", kMaxValuesPerList,
                          "omit interfaces to attach to every interface but loopback");
    if (list == nullptr) return;
    const std::string listPath = fieldPath(path, "interfaces");
    // Interface name -> the node that first named it.
    std::unordered_map<std::string, const Node*> seen;
    for (size_t i = 0; i < list->children.size(); ++i) {
      const Node& item = node(list->children[i]);
      const std::string at = itemPath(listPath, i);
      std::optional<std::string> name = stringValue(item, at);
      if (!name) continue;
      if (std::string problem = interfaceNameProblem(*name); !problem.empty()) {
        error(item, at, quoted(*name) + " " + problem);
        continue;
      }
      if (auto [it, inserted] = seen.emplace(*name, &item); !inserted) {
        error(item, at, "duplicate interface " + quoted(*name) + firstAt(*it->second));
        continue;
      }
      xdp.interfaces.push_back(std::move(*name));
      xdp.interfacePositions.push_back(Position{file_, item.line, item.column});
    }
  }

  static std::string firstAt(const Node& first) {
    return " (first at line " + std::to_string(first.line) + ", column " +
           std::to_string(first.column) + ")";
  }

  void readXdpRules(const Node& rules, const std::string& path, std::vector<XdpRule>& out) {
    readRuleList(rules, path, out,
                 [this](const Node& item, const std::string& p, XdpRule& r, const Node*& n) {
                   readXdpRule(item, p, r, n);
                 });
  }

  void readXdpRule(const Node& mapping, const std::string& path, XdpRule& rule,
                   const Node*& nameNode) {
    rule.position = Position{file_, mapping.line, mapping.column};
    const Fields fields = fieldsOf(mapping, path, {"name", "action", "mode", "match", "rateLimit"});
    if (auto name = stringField(mapping, fields, path, "name", true)) {
      const Node& at = *find(fields, "name")->value;
      if (checkName(at, fieldPath(path, "name"), *name)) {
        rule.name = *name;
        nameNode = &at;
      }
    }
    bool pass = false;
    if (auto action = stringField(mapping, fields, path, "action", false)) {
      if (*action == "drop") {
        rule.action = XdpAction::drop;
      } else if (*action == "pass") {
        rule.action = XdpAction::pass;
        pass = true;
      } else {
        error(*find(fields, "action")->value, fieldPath(path, "action"),
              "unknown action " + quoted(*action) + " (allowed: drop, pass)");
      }
    }
    if (auto mode = stringField(mapping, fields, path, "mode", false)) {
      rule.mode = parseMode(*mode, *find(fields, "mode")->value, fieldPath(path, "mode"));
    }

    const bool hasMatch = find(fields, "match") != nullptr;
    const bool hasRateLimit = find(fields, "rateLimit") != nullptr;
    if (const Node* match = writtenMappingField(
            fields, path, "match",
            "set at least one condition (only a rule with a rateLimit may omit match)")) {
      readXdpMatch(*match, fieldPath(path, "match"), rule.match);
    }
    const std::string ratePath = fieldPath(path, "rateLimit");
    if (const Node* rate =
            writtenMappingField(fields, path, "rateLimit", "remove it for no rate limit")) {
      RateLimit limit;
      readRateLimit(*rate, ratePath, limit);
      rule.rateLimit = limit;
      if (pass) {
        error(*rate, ratePath,
              "a rate limit needs action drop: the packets over the rate are dropped (or counted, "
              "in audit mode); remove rateLimit or \"action: pass\"");
      }
    }
    if (!hasMatch && !hasRateLimit) {
      error(mapping, path,
            "missing required field \"match\" (only a rule with a rateLimit may omit it, to "
            "limit every packet)");
    }
  }

  void readXdpMatch(const Node& mapping, const std::string& path, XdpMatch& match) {
    const size_t before = issues_.count();
    const Fields fields = fieldsOf(
        mapping, path, {"sourceCIDRs", "destinationCIDRs", "protocol", "destinationPorts"});
    readCidrs(fields, path, "sourceCIDRs", match.sources);
    const Node* destinations = readCidrs(fields, path, "destinationCIDRs", match.destinations);
    const Node* protocolNode = nullptr;
    if (auto protocol = stringField(mapping, fields, path, "protocol", false)) {
      protocolNode = find(fields, "protocol")->value;
      match.protocolPosition = Position{file_, protocolNode->line, protocolNode->column};
      if (*protocol == "tcp") {
        match.protocol = Protocol::tcp;
      } else if (*protocol == "udp") {
        match.protocol = Protocol::udp;
      } else if (*protocol == "icmp") {
        match.protocol = Protocol::icmp;
      } else if (*protocol == "icmpv6") {
        match.protocol = Protocol::icmpv6;
      } else {
        error(*protocolNode, fieldPath(path, "protocol"),
              "unknown protocol " + quoted(*protocol) + " (allowed: tcp, udp, icmp, icmpv6)");
      }
    }
    const Node* ports = readPorts(fields, path, match.ports);
    // The checks below need every part; a part that was wrong has been reported already.
    if (issues_.count() != before) return;

    if (match.sources.empty() && match.destinations.empty() && !match.protocol &&
        match.ports.empty()) {
      error(mapping, path,
            "no conditions: set at least one of sourceCIDRs, destinationCIDRs, protocol, "
            "destinationPorts (or omit match in a rule with a rateLimit, to limit every packet)");
      return;
    }
    // Which address families can still match: each CIDR list that is set narrows them.
    const auto families = [](const std::vector<Cidr>& list) {
      bool v4 = list.empty();
      bool v6 = list.empty();
      for (const Cidr& c : list) (c.v4 ? v4 : v6) = true;
      return std::pair(v4, v6);
    };
    const auto [sourceV4, sourceV6] = families(match.sources);
    const auto [destinationV4, destinationV6] = families(match.destinations);
    if (!(sourceV4 && destinationV4) && !(sourceV6 && destinationV6)) {
      error(*destinations, fieldPath(path, "destinationCIDRs"),
            std::string("all blocks are ") + (destinationV4 ? "IPv4" : "IPv6") +
                " but all sourceCIDRs blocks are " + (sourceV4 ? "IPv4" : "IPv6") +
                ": a packet is one or the other, so the rule can never match");
      return;
    }
    if (match.protocol == Protocol::icmp || match.protocol == Protocol::icmpv6) {
      const bool icmp = match.protocol == Protocol::icmp;
      const bool sourceOk = icmp ? sourceV4 : sourceV6;
      const bool destinationOk = icmp ? destinationV4 : destinationV6;
      if (!sourceOk || !destinationOk) {
        error(*protocolNode, fieldPath(path, "protocol"),
              std::string(icmp ? "icmp is IPv4 only, but " : "icmpv6 is IPv6 only, but ") +
                  (sourceOk ? "destinationCIDRs" : "sourceCIDRs") + " has no " +
                  (icmp ? "IPv4" : "IPv6") + " block, so the rule can never match (use " +
                  (icmp ? "icmpv6" : "icmp") + " for " + (icmp ? "IPv6" : "IPv4") + ")");
        return;
      }
      if (ports != nullptr) {
        error(*ports, fieldPath(path, "destinationPorts"),
              std::string("protocol ") + toString(*match.protocol) +
                  " has no ports; ports need protocol tcp or udp, or no protocol (then both)");
      }
    }
  }

  // Returns the list node when the field is set (its entries may still have been wrong).
  const Node* readCidrs(const Fields& fields, const std::string& path, std::string_view name,
                        std::vector<Cidr>& out) {
    const Node* list =
        nonEmptyListField(fields, path, name, kMaxXdpListValues, "omit it to match any address");
    if (list == nullptr) return nullptr;
    const std::string listPath = fieldPath(path, name);
    // Block -> the node that first wrote it ("10.0.0.1" and "10.0.0.1/32" are the same).
    std::map<Cidr, const Node*> seen;
    for (size_t i = 0; i < list->children.size(); ++i) {
      const Node& item = node(list->children[i]);
      const std::string at = itemPath(listPath, i);
      if (item.rejected) continue;
      if (item.kind != NodeKind::scalar || item.type != ScalarType::string) {
        error(item, at,
              "expected an address block (a.b.c.d/n, a.b.c.d, x::/n or an IPv6 address), got " +
                  describe(item));
        continue;
      }
      std::string why;
      std::optional<Cidr> cidr = parseCidr(item.text, why);
      if (!cidr) {
        error(item, at, quoted(item.text) + " " + why);
        continue;
      }
      if (auto [it, inserted] = seen.emplace(*cidr, &item); !inserted) {
        error(item, at, "duplicate address block " + cidr->str() + firstAt(*it->second));
        continue;
      }
      cidr->position = Position{file_, item.line, item.column};
      out.push_back(std::move(*cidr));
    }
    return list;
  }

  // Returns the list node when the field is set (its entries may still have been wrong).
  const Node* readPorts(const Fields& fields, const std::string& path,
                        std::vector<PortRange>& out) {
    const Node* list = nonEmptyListField(fields, path, "destinationPorts", kMaxXdpListValues,
                                         "omit it to match any port");
    if (list == nullptr) return nullptr;
    const std::string listPath = fieldPath(path, "destinationPorts");
    const std::string expected =
        "a port (an integer 1.." + std::to_string(kMaxPort) + ") or a range (\"lo-hi\")";
    // (lo, hi) -> the node that first wrote it (443 and "443" are the same).
    std::map<std::pair<uint16_t, uint16_t>, const Node*> seen;
    for (size_t i = 0; i < list->children.size(); ++i) {
      const Node& item = node(list->children[i]);
      const std::string at = itemPath(listPath, i);
      if (item.rejected) continue;
      std::optional<PortRange> range;
      if (item.kind == NodeKind::scalar && item.type == ScalarType::string) {
        std::string why;
        range = parsePortRange(item.text, why);
        if (!range) error(item, at, quoted(item.text) + " " + why);
      } else if (auto port = integerValue(item, at, "port", expected, 1, kMaxPort)) {
        range = PortRange{static_cast<uint16_t>(*port), static_cast<uint16_t>(*port), {}};
      }
      if (!range) continue;
      if (auto [it, inserted] = seen.emplace(std::pair(range->lo, range->hi), &item); !inserted) {
        error(item, at, "duplicate port " + portText(*range) + firstAt(*it->second));
        continue;
      }
      range->position = Position{file_, item.line, item.column};
      out.push_back(std::move(*range));
    }
    return list;
  }

  static std::string portText(const PortRange& r) {
    return r.lo == r.hi ? std::to_string(r.lo) : std::to_string(r.lo) + "-" + std::to_string(r.hi);
  }

  void readRateLimit(const Node& mapping, const std::string& path, RateLimit& limit) {
    limit.position = Position{file_, mapping.line, mapping.column};
    const Fields fields = fieldsOf(mapping, path, {"packetsPerSecond", "burst", "perSourcePrefix"});
    if (auto pps = integerField(mapping, fields, path, "packetsPerSecond", true, 1,
                                kMaxPacketsPerSecond)) {
      limit.packetsPerSecond = *pps;
    }
    if (auto burst = integerField(mapping, fields, path, "burst", false, 1, kMaxBurst)) {
      limit.burst = *burst;
    }
    const Node* prefixes = writtenMappingField(fields, path, "perSourcePrefix",
                                               "remove it for the defaults (ipv4: 32, ipv6: 64)");
    if (prefixes == nullptr) return;
    const std::string prefixPath = fieldPath(path, "perSourcePrefix");
    if (prefixes->children.empty()) {
      error(*prefixes, prefixPath,
            "must not be empty; set ipv4, ipv6 or both, or remove it for the defaults (ipv4: 32, "
            "ipv6: 64)");
      return;
    }
    const Fields prefixFields = fieldsOf(*prefixes, prefixPath, {"ipv4", "ipv6"});
    if (auto v4 = integerField(*prefixes, prefixFields, prefixPath, "ipv4", false, 0, 32)) {
      limit.ipv4Prefix = static_cast<int>(*v4);
    }
    if (auto v6 = integerField(*prefixes, prefixFields, prefixPath, "ipv6", false, 0, 128)) {
      limit.ipv6Prefix = static_cast<int>(*v6);
    }
  }

  const Tree& tree_;
  const std::string& file_;
  Issues& issues_;
  std::string name_;
  const Node* nameNode_ = nullptr;
};

ParseResult fileError(const std::string& path, std::string message) {
  ParseResult result;
  result.errors.push_back({Position{path, 0, 0}, std::move(message)});
  return result;
}

std::string tooLargeMessage(uint64_t size) {
  return "the policy text is " + std::to_string(size) + " bytes, over the limit of " +
         std::to_string(kMaxFileBytes) + " bytes";
}

}  // namespace

std::optional<Cidr> parseCidr(const std::string& text, std::string& why) {
  const size_t slash = text.find('/');
  const std::string address = text.substr(0, slash);
  Cidr cidr;
  uint8_t v4[4];
  if (inet_pton(AF_INET, address.c_str(), v4) == 1) {
    cidr.v4 = true;
    std::copy(kV4MappedPrefix.begin(), kV4MappedPrefix.end(), cidr.addr.begin());
    std::copy(v4, v4 + 4, cidr.addr.begin() + 12);
  } else if (inet_pton(AF_INET6, address.c_str(), cidr.addr.data()) != 1) {
    why =
        "is not an IPv4 or IPv6 address block (write a.b.c.d/n, a.b.c.d, x::/n or an IPv6 "
        "address)";
    return std::nullopt;
  }
  const int familyBits = cidr.v4 ? 32 : 128;
  cidr.prefix = familyBits;
  if (slash != std::string::npos) {
    const std::string_view prefixText = std::string_view(text).substr(slash + 1);
    const std::optional<uint32_t> prefix = plainDecimal(prefixText, 3);
    if (!prefix || *prefix > static_cast<uint32_t>(familyBits)) {
      why = "has an invalid prefix length " + quoted(prefixText) + " (allowed: 0.." +
            std::to_string(familyBits) + (cidr.v4 ? " for IPv4" : " for IPv6") +
            ", in decimal digits)";
      return std::nullopt;
    }
    cidr.prefix = static_cast<int>(*prefix);
  }
  const int bits = cidr.prefix + (cidr.v4 ? 96 : 0);
  if (const auto network = masked(cidr.addr, bits); network != cidr.addr) {
    cidr.addr = network;
    why = "has host bits set; did you mean " + cidr.str() + "?";
    return std::nullopt;
  }
  if (!cidr.v4 && cidr.prefix >= 96 &&
      std::equal(kV4MappedPrefix.begin(), kV4MappedPrefix.end(), cidr.addr.begin())) {
    // Packets carry IPv4 addresses as IPv4, so the mapped spelling would never match.
    Cidr dotted = cidr;
    dotted.v4 = true;
    dotted.prefix = cidr.prefix - 96;
    why = "is an IPv4-mapped IPv6 address block; write IPv4 in dotted form: " + dotted.str();
    return std::nullopt;
  }
  return cidr;
}

std::string ParseIssue::str() const { return position.str() + ": " + message; }

std::string ParseResult::errorText() const {
  std::string out;
  for (const ParseIssue& issue : errors) {
    if (!out.empty()) out += '\n';
    out += issue.str();
  }
  return out;
}

ParseResult parsePolicies(const std::string& text, const std::string& sourceName) {
  if (text.size() > kMaxFileBytes) return fileError(sourceName, tooLargeMessage(text.size()));

  Issues issues(sourceName);
  size_t documents = 0;
  std::vector<Policy> policies;
  if (checkEncoding(text, issues)) {
    // Policy name -> where it was first defined in this text.
    std::unordered_map<std::string, int> names;
    StreamReader stream(text, issues);
    stream.read([&](const Tree& tree) {
      const Node& root = tree.nodes[tree.root];
      // An empty document (a stray "---", or only comments) carries nothing: skip it, as
      // kubectl does.
      if (isNull(root) && root.text.empty()) return;
      ++documents;
      PolicyReader reader(tree, sourceName, issues);
      std::optional<Policy> policy = reader.read();
      if (const Node* at = reader.nameNode()) {
        auto [it, inserted] = names.emplace(reader.name(), at->line);
        if (!inserted) {
          issues.add(at->line, at->column,
                     "metadata.name: duplicate policy name " + quoted(reader.name()) +
                         " (first used at line " + std::to_string(it->second) + ")");
          return;
        }
      }
      if (policy) policies.push_back(std::move(*policy));
    });
  }
  if (issues.count() == 0 && documents == 0) {
    return fileError(sourceName, "no policy documents");
  }
  ParseResult result;
  result.errors = issues.take();
  if (result.errors.empty()) result.policies = std::move(policies);
  return result;
}

ParseResult parsePolicyFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fileError(path, std::string("cannot open: ") + std::strerror(errno));
  UniqueFd closer(fd);

  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return fileError(path, std::string("cannot stat: ") + std::strerror(errno));
  }
  if (S_ISDIR(st.st_mode)) {
    return fileError(path, std::string("cannot read: ") + std::strerror(EISDIR));
  }
  // Regular files are checked before reading anything; pipes and the like are read up to one
  // byte past the limit.
  if (S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) > kMaxFileBytes) {
    return fileError(path, tooLargeMessage(static_cast<uint64_t>(st.st_size)));
  }

  // Read up to one byte past the limit; a regular file starts with a buffer of its own size
  // and grows only if the file does while it is being read.
  constexpr size_t kReadLimit = kMaxFileBytes + 1;
  std::string text;
  text.resize(S_ISREG(st.st_mode) ? static_cast<size_t>(st.st_size) + 1 : kReadLimit);
  size_t used = 0;
  while (used < kReadLimit) {
    if (used == text.size()) text.resize(kReadLimit);
    const ssize_t n = ::read(fd, text.data() + used, text.size() - used);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fileError(path, std::string("cannot read: ") + std::strerror(errno));
    }
    if (n == 0) break;
    used += static_cast<size_t>(n);
  }
  if (used > kMaxFileBytes) {
    return fileError(
        path, "the policy text is over the limit of " + std::to_string(kMaxFileBytes) + " bytes");
  }
  text.resize(used);
  return parsePolicies(text, path);
}

}  // namespace vigil::policy
