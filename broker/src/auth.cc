// Token file parsing, glob matching and the permission checks of access control.
#include "runnel/broker/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cerrno>
#include <cstring>
#include <fstream>

namespace runnel::broker {
namespace {

using Hash = std::array<uint8_t, 32>;

Hash Sha256(std::string_view data) {
  Hash h{};
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), h.data(), &n, EVP_sha256(), nullptr);
  return h;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::vector<std::string_view> SplitWhitespace(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
    const size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '\r') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

std::vector<std::string> SplitCommas(std::string_view list) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    const size_t comma = list.find(',', start);
    out.emplace_back(list.substr(start, comma == std::string_view::npos ? comma : comma - start));
    if (comma == std::string_view::npos) return out;
    start = comma + 1;
  }
}

bool ValidName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool AnyMatch(const std::vector<std::string>& globs, std::string_view name) {
  for (const auto& g : globs)
    if (GlobMatch(g, name)) return true;
  return false;
}

std::string_view Verb(Op op) {
  switch (op) {
    case Op::kProduce: return "produce to";
    case Op::kConsume: return "consume from";
    case Op::kAdmin: return "administer";
  }
  return "use";
}

constexpr Op kOps[] = {Op::kProduce, Op::kConsume, Op::kAdmin};

// OK, or "token 'name' may not <verb> <kind> '<resource>'".
Status Decide(bool allowed, const Principal& p, std::string_view verb, std::string_view kind,
              std::string_view resource) {
  if (allowed) return Status::OK();
  return Status::PermissionDenied("token '" + p.name + "' may not " + std::string(verb) + " " +
                                  std::string(kind) + " '" + std::string(resource) + "'");
}

// Parses one non-comment line into a principal and its secret's hash.
Status ParseLine(std::string_view line, Principal* p, Hash* hash) {
  const auto fields = SplitWhitespace(line);
  if (fields.size() != 5) {
    return Status::InvalidArgument("expected 5 fields (name secret operations topics groups), got " +
                                   std::to_string(fields.size()));
  }
  if (!ValidName(fields[0])) {
    return Status::InvalidArgument("bad token name '" + std::string(fields[0]) +
                                   "' (1-64 of A-Z a-z 0-9 . _ -)");
  }
  p->name = std::string(fields[0]);
  const std::string_view secret = fields[1];
  constexpr std::string_view kPrefix = "sha256:";
  if (secret.substr(0, kPrefix.size()) == kPrefix) {
    const std::string_view hex = secret.substr(kPrefix.size());
    if (hex.size() != 64) return Status::InvalidArgument("a sha256: secret needs 64 hex digits");
    for (size_t i = 0; i < 32; ++i) {
      const int hi = HexDigit(hex[2 * i]);
      const int lo = HexDigit(hex[2 * i + 1]);
      if (hi < 0 || lo < 0) return Status::InvalidArgument("a sha256: secret needs 64 hex digits");
      (*hash)[i] = static_cast<uint8_t>(hi * 16 + lo);
    }
  } else {
    if (secret.size() < 16) {
      return Status::InvalidArgument("token '" + p->name +
                                     "': a secret needs at least 16 characters");
    }
    if (secret.size() > kMaxTokenBytes) {
      return Status::InvalidArgument("token '" + p->name + "': a secret may have at most " +
                                     std::to_string(kMaxTokenBytes) + " characters");
    }
    *hash = Sha256(secret);
  }
  p->ops = 0;
  for (const auto& name : SplitCommas(fields[2])) {
    uint8_t bits = name == "all" ? kAllOps : 0;
    for (Op op : kOps)
      if (name == OpName(op)) bits = static_cast<uint8_t>(op);
    if (bits == 0) {
      return Status::InvalidArgument("unknown operation '" + name +
                                     "' (expected produce, consume, admin or all)");
    }
    p->ops |= bits;
  }
  for (auto [field, out] : {std::pair{fields[3], &p->topics}, std::pair{fields[4], &p->groups}}) {
    if (field == "-") continue;
    for (auto& g : SplitCommas(field)) {
      if (g.empty()) return Status::InvalidArgument("empty glob in '" + std::string(field) + "'");
      out->push_back(std::move(g));
    }
  }
  return Status::OK();
}

}  // namespace

std::string_view OpName(Op op) {
  switch (op) {
    case Op::kProduce: return "produce";
    case Op::kConsume: return "consume";
    case Op::kAdmin: return "admin";
  }
  return "unknown";
}

Status Principal::Allows(Op op) const {
  if (Has(op)) return Status::OK();
  return Status::PermissionDenied("token '" + name + "' may not " + std::string(OpName(op)));
}

Status Principal::OnTopic(Op op, std::string_view topic) const {
  return Decide(Has(op) && AnyMatch(topics, topic), *this, Verb(op), "topic", topic);
}

Status Principal::OnGroup(Op op, std::string_view group) const {
  return Decide(Has(op) && AnyMatch(groups, group), *this, Verb(op), "group", group);
}

Status Principal::SeeTopic(std::string_view topic) const {
  return Decide(SeesTopic(topic), *this, "see", "topic", topic);
}

Status Principal::SeeGroup(std::string_view group) const {
  return Decide(SeesGroup(group), *this, "see", "group", group);
}

bool Principal::SeesTopic(std::string_view topic) const { return AnyMatch(topics, topic); }
bool Principal::SeesGroup(std::string_view group) const { return AnyMatch(groups, group); }

Result<std::shared_ptr<const TokenSet>> TokenSet::Parse(std::string_view text,
                                                        std::string_view origin) {
  auto set = std::make_shared<TokenSet>();
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (const size_t hash = line.find('#'); hash != std::string_view::npos)
      line = line.substr(0, hash);
    if (SplitWhitespace(line).empty()) continue;
    auto p = std::make_shared<Principal>();
    Entry e;
    Status s = ParseLine(line, p.get(), &e.hash);
    for (const auto& other : set->entries_) {
      if (!s.ok()) break;
      if (other.principal->name == p->name)
        s = Status::InvalidArgument("token name '" + p->name + "' appears twice");
      else if (other.hash == e.hash)
        s = Status::InvalidArgument("token '" + p->name + "' has the same secret as '" +
                                    other.principal->name + "'");
    }
    if (!s.ok()) {
      return Status::InvalidArgument(std::string(origin) + ":" + std::to_string(line_no) + ": " +
                                     s.message());
    }
    e.principal = std::move(p);
    set->entries_.push_back(std::move(e));
  }
  if (set->entries_.empty()) {
    return Status::InvalidArgument(std::string(origin) +
                                   ": no tokens (every connection would be refused)");
  }
  return std::shared_ptr<const TokenSet>(std::move(set));
}

Result<std::shared_ptr<const TokenSet>> TokenSet::Load(const std::string& path) {
  constexpr size_t kMaxFileBytes = 1 << 20;  // bounded: a path like /dev/zero must not hang
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IOError("cannot read token file " + path + ": " + std::strerror(errno));
  std::string text(kMaxFileBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) return Status::IOError("cannot read token file " + path + ": " + std::strerror(errno));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > kMaxFileBytes)
    return Status::InvalidArgument("token file " + path + " is larger than 1 MiB");
  return Parse(text, path);
}

Result<std::shared_ptr<const Principal>> TokenSet::Authenticate(std::string_view token) const {
  if (token.size() > kMaxTokenBytes) {
    return Status::Unauthenticated("token longer than " + std::to_string(kMaxTokenBytes) +
                                   " bytes");
  }
  const Hash h = Sha256(token);
  std::shared_ptr<const Principal> found;
  for (const auto& e : entries_) {
    // No early exit: every entry is compared, each in constant time.
    if (CRYPTO_memcmp(e.hash.data(), h.data(), h.size()) == 0) found = e.principal;
  }
  if (!found) return Status::Unauthenticated("invalid token");
  return found;
}

std::string Sha256Hex(std::string_view data) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (uint8_t b : Sha256(data)) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

}  // namespace runnel::broker
