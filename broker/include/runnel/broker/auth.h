// Access control: the tokens of `runneld --auth-tokens FILE` and what each may do.
//
// The file has one token per line (blank lines and `#` comments are skipped):
//
//     # name     secret                        operations        topics           groups
//     billing    sha256:9f86d08...             produce,consume   orders.*,audit   billing-*
//     ops        0Zp4x-long-random-secret...   all               *                *
//
// - name: 1-64 of [A-Za-z0-9._-]; the principal's name in logs and in Authenticate's answer.
// - secret: the token itself (16 to kMaxTokenBytes characters), or `sha256:` and the 64 hex digits of its
//   SHA-256 (`runnelctl token new` prints both), so the file need not hold usable secrets.
// - operations: a comma list of produce, consume, admin, or `all` for the three.
// - topics, groups: comma lists of globs (`*` any run of characters, `?` one character);
//   `-` for none.
//
// A request is allowed when the token has the operation and the topic / group matches one of
// its globs (see ARCHITECTURE.md "Access control" for the table of request -> operation).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runnel/common/glob.h"
#include "runnel/common/result.h"

namespace runnel::broker {

enum class Op : uint8_t { kProduce = 1, kConsume = 2, kAdmin = 4 };
inline constexpr uint8_t kAllOps = 7;

std::string_view OpName(Op op);

using runnel::GlobMatch;  // runnel/common/glob.h

// What one token may do. Immutable once loaded; shared by the sessions that authenticated with it.
struct Principal {
  std::string name;
  uint8_t ops = 0;
  std::vector<std::string> topics;  // globs
  std::vector<std::string> groups;  // globs

  bool Has(Op op) const { return (ops & static_cast<uint8_t>(op)) != 0; }
  // The operation on a topic / group, or PermissionDenied naming the token, operation and name.
  Status OnTopic(Op op, std::string_view topic) const;
  Status OnGroup(Op op, std::string_view group) const;
  // Any operation on a topic / group its globs match: describe-type requests (offsets, status,
  // a named Metadata, DescribeGroup). PermissionDenied otherwise.
  Status SeeTopic(std::string_view topic) const;
  Status SeeGroup(std::string_view group) const;
  // The operation itself, whatever the resource (InitProducerId, Stats).
  Status Allows(Op op) const;
  // Visible in listings (Metadata without names, ListGroups): some glob matches.
  bool SeesTopic(std::string_view topic) const;
  bool SeesGroup(std::string_view group) const;
};

// The longest token a client may present (and a plain secret in the file may have): longer ones
// are refused before they are hashed, so a stranger cannot make a network thread hash megabytes.
inline constexpr size_t kMaxTokenBytes = 4096;

class TokenSet {
 public:
  // Parses the file text; InvalidArgument naming `origin`:line and what is wrong.
  static Result<std::shared_ptr<const TokenSet>> Parse(std::string_view text,
                                                       std::string_view origin);
  // Reads and parses a file; IOError when it cannot be read.
  static Result<std::shared_ptr<const TokenSet>> Load(const std::string& path);

  // The principal of `token`, or Unauthenticated (also for a token longer than kMaxTokenBytes,
  // which is not hashed). Compares the token's SHA-256 with every entry
  // in constant time, so the answer's timing does not tell how close a guess came.
  Result<std::shared_ptr<const Principal>> Authenticate(std::string_view token) const;

  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::array<uint8_t, 32> hash;
    std::shared_ptr<const Principal> principal;
  };
  std::vector<Entry> entries_;
};

// The SHA-256 of `data` as 64 lowercase hex digits (the form `sha256:` secrets take).
std::string Sha256Hex(std::string_view data);

}  // namespace runnel::broker
