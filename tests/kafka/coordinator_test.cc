// The Kafka group coordinator (broker/kafka/src/coordinator.h) against Kafka's GroupCoordinator
// semantics: JoinGroup (initial delay, KIP-394 member ids), SyncGroup, Heartbeat, LeaveGroup,
// session and rebalance timeouts, static membership (KIP-345), protocol selection, the
// OffsetCommit rules, the admin views, and the consumer-protocol parsers on hostile bytes.
//
// Deterministic: the coordinator reads a manual clock (an int64_t the tests advance) and time only
// passes when a test calls Tick, as the front-end's timer thread does. Every completion runs on the
// calling thread before the call returns, so a test sees each answer as soon as it exists.
#include "coordinator.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

// Member id sets in failure messages (doctest prints Error values by their Kafka code).
namespace doctest {
template <>
struct StringMaker<std::set<std::string>> {
  static String convert(const std::set<std::string>& ids) {
    std::string out = "{";
    for (const std::string& id : ids) out += (out.size() > 1 ? ", " : "") + id;
    return (out + "}").c_str();
  }
};
}  // namespace doctest

namespace runnel::kafka {
namespace {

constexpr int32_t kSession = 10'000;
constexpr int32_t kRebalance = 30'000;
constexpr int32_t kDelay = 3'000;
const std::string kGroup = "g1";

// Big-endian wire bytes, built field by field as Kafka's consumer protocol lays them out.
class Bytes {
 public:
  Bytes& I16(int v) { return Put(static_cast<uint64_t>(v), 2); }
  Bytes& I32(int64_t v) { return Put(static_cast<uint64_t>(v), 4); }
  Bytes& Str(std::string_view v) {
    I16(static_cast<int>(v.size()));
    s_ += v;
    return *this;
  }
  const std::string& str() const { return s_; }

 private:
  Bytes& Put(uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) s_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    return *this;
  }
  std::string s_;
};

// ConsumerProtocolSubscription v0: version, topics, user data (null).
std::string Subscription(const std::vector<std::string>& topics) {
  Bytes b;
  b.I16(0).I32(static_cast<int64_t>(topics.size()));
  for (const std::string& t : topics) b.Str(t);
  b.I32(-1);
  return b.str();
}

using TopicParts = std::vector<std::pair<std::string, std::vector<int32_t>>>;

// ConsumerProtocolAssignment v0: version, (topic, partitions) per topic, user data (null).
std::string Assignment(const TopicParts& topics) {
  Bytes b;
  b.I16(0).I32(static_cast<int64_t>(topics.size()));
  for (const auto& tp : topics) {
    b.Str(tp.first).I32(static_cast<int64_t>(tp.second.size()));
    for (int32_t p : tp.second) b.I32(p);
  }
  b.I32(-1);
  return b.str();
}

struct JoinCall {
  int calls = 0;
  JoinOutcome out;
  bool done() const { return calls > 0; }
};
struct SyncCall {
  int calls = 0;
  SyncOutcome out;
  bool done() const { return calls > 0; }
};

using Assignments = std::vector<std::pair<std::string, std::string>>;

// The coordinator with a manual clock and a recording store callback.
class Harness {
 public:
  static CoordinatorOptions DefaultOptions() {
    CoordinatorOptions o;
    o.initial_rebalance_delay_ms = kDelay;
    return o;
  }

  explicit Harness(CoordinatorOptions options = DefaultOptions())
      : coord(options, [this] { return now; },
              [this](const std::string& group) {
                ensured.push_back(group);
                return ensure_status;
              }) {}

  int64_t now = 1'000'000;
  std::vector<std::string> ensured;
  Status ensure_status = Status::OK();
  GroupCoordinator coord;  // last: its callbacks read the fields above

  // Moves the clock, then runs the coordinator's timer once.
  void Advance(int64_t ms) {
    now += ms;
    coord.Tick();
  }

  std::shared_ptr<JoinCall> Join(JoinArgs args) {
    auto call = std::make_shared<JoinCall>();
    coord.Join(std::move(args), [call](JoinOutcome o) {
      ++call->calls;
      call->out = std::move(o);
    });
    return call;
  }

  std::shared_ptr<SyncCall> Sync(const std::string& member, int32_t generation,
                                 Assignments assignments = {},
                                 const std::optional<std::string>& instance = std::nullopt,
                                 const std::string& group = kGroup) {
    auto call = std::make_shared<SyncCall>();
    coord.Sync(group, generation, member, instance, std::move(assignments), [call](SyncOutcome o) {
      ++call->calls;
      call->out = std::move(o);
    });
    return call;
  }

  Error Heartbeat(const std::string& member, int32_t generation,
                  const std::optional<std::string>& instance = std::nullopt,
                  const std::string& group = kGroup) {
    return coord.Heartbeat(group, generation, member, instance);
  }

  Error Commit(const std::string& member, int32_t generation,
               const std::optional<std::string>& instance = std::nullopt,
               const std::string& group = kGroup) {
    return coord.CheckCommit(group, generation, member, instance);
  }

  Error Leave(const std::string& member, const std::optional<std::string>& instance = std::nullopt,
              const std::string& group = kGroup) {
    std::vector<Error> r = coord.Leave(group, {{member, instance}});
    REQUIRE(r.size() == 1);
    return r[0];
  }

  std::string State(const std::string& group = kGroup) {
    auto v = coord.View(group);
    return v ? v->state : std::string("(none)");
  }

  std::set<std::string> Members(const std::string& group = kGroup) {
    std::set<std::string> ids;
    if (auto v = coord.View(group))
      for (const auto& m : v->members) ids.insert(m.member_id);
    return ids;
  }
};

std::vector<ProtocolEntry> Range(const std::vector<std::string>& topics = {"orders"}) {
  return {{"range", Subscription(topics)}};
}

JoinArgs Args(const std::string& member_id = "",
              std::vector<ProtocolEntry> protocols = Range(),
              const std::string& group = kGroup) {
  JoinArgs a;
  a.group_id = group;
  a.member_id = member_id;
  a.client_id = "client";
  a.client_host = "/127.0.0.1";
  a.session_timeout_ms = kSession;
  a.rebalance_timeout_ms = kRebalance;
  a.protocol_type = "consumer";
  a.protocols = std::move(protocols);
  return a;
}

JoinArgs Static(const std::string& instance, const std::string& member_id = "",
                std::vector<ProtocolEntry> protocols = Range()) {
  JoinArgs a = Args(member_id, std::move(protocols));
  a.instance_id = instance;
  return a;
}

// Two members join an empty group during its initial delay, which then passes: both answered.
std::pair<std::shared_ptr<JoinCall>, std::shared_ptr<JoinCall>> JoinTwo(Harness& h, JoinArgs first,
                                                                      JoinArgs second) {
  auto j1 = h.Join(std::move(first));
  auto j2 = h.Join(std::move(second));
  h.Advance(2 * kDelay + 1);
  REQUIRE(j1->done());
  REQUIRE(j2->done());
  return {j1, j2};
}

struct StablePair {
  std::string leader;
  std::string follower;
  int32_t generation = -1;
};

// Two members join an empty group during its initial delay (`first` before `second`, so `first`
// leads), the follower syncs, then the leader with assignments "assignment-L" / "assignment-F".
StablePair MakeStablePair(Harness& h, JoinArgs first, JoinArgs second) {
  const auto joined = JoinTwo(h, std::move(first), std::move(second));
  const auto& j1 = joined.first;
  const auto& j2 = joined.second;
  REQUIRE(j1->out.error == Error::kNone);
  REQUIRE(j2->out.error == Error::kNone);
  StablePair p{j1->out.member_id, j2->out.member_id, j1->out.generation};
  REQUIRE(j1->out.leader == p.leader);
  auto sf = h.Sync(p.follower, p.generation);
  auto sl = h.Sync(p.leader, p.generation,
                   {{p.leader, "assignment-L"}, {p.follower, "assignment-F"}});
  REQUIRE(sl->done());
  REQUIRE(sf->done());
  REQUIRE(sl->out.error == Error::kNone);
  REQUIRE(sf->out.error == Error::kNone);
  REQUIRE(h.State() == "Stable");
  return p;
}

StablePair MakeStablePair(Harness& h) { return MakeStablePair(h, Args(), Args()); }

// Advances `steps` seconds, one Tick a second, calling `each` after every Tick.
void EverySecond(Harness& h, int steps, const std::function<void()>& each) {
  for (int i = 0; i < steps; ++i) {
    h.Advance(1000);
    each();
  }
}

// ---- JoinGroup ------------------------------------------------------------------------------

TEST_CASE("Kafka coordinator: the first join of an empty group waits out the initial delay") {
  Harness h;
  auto j = h.Join(Args());  // JoinGroup v3: no member id required
  CHECK_FALSE(j->done());
  CHECK(h.State() == "PreparingRebalance");
  CHECK(h.ensured == std::vector<std::string>{kGroup});

  h.Advance(kDelay - 1);
  CHECK_FALSE(j->done());
  h.Advance(2);
  REQUIRE(j->done());
  CHECK(j->calls == 1);
  const JoinOutcome& o = j->out;
  CHECK(o.error == Error::kNone);
  CHECK(o.generation == 1);
  CHECK(o.protocol_name == "range");
  CHECK(o.member_id.rfind("client-", 0) == 0);
  CHECK(o.member_id.size() > std::string("client-").size());
  CHECK(o.leader == o.member_id);
  REQUIRE(o.members.size() == 1);
  CHECK(o.members[0].member_id == o.member_id);
  CHECK_FALSE(o.members[0].instance_id.has_value());
  CHECK(o.members[0].metadata == Subscription({"orders"}));
  CHECK(h.State() == "CompletingRebalance");

  auto s = h.Sync(o.member_id, 1, {{o.member_id, "mine"}});
  REQUIRE(s->done());
  CHECK(s->out.error == Error::kNone);
  CHECK(s->out.assignment == "mine");
  CHECK(h.State() == "Stable");
  CHECK(h.Heartbeat(o.member_id, 1) == Error::kNone);
  h.Advance(kRebalance);
  CHECK(j->calls == 1);  // answered exactly once
  CHECK(s->calls == 1);
}

TEST_CASE("Kafka coordinator: with no initial delay a join completes at the next check") {
  CoordinatorOptions o = Harness::DefaultOptions();
  o.initial_rebalance_delay_ms = 0;
  Harness h(o);
  auto j = h.Join(Args());
  h.coord.Tick();  // the clock did not move
  REQUIRE(j->done());
  CHECK(j->out.error == Error::kNone);
  CHECK(j->out.generation == 1);
  CHECK(j->out.leader == j->out.member_id);
  CHECK(h.State() == "CompletingRebalance");
}

TEST_CASE("Kafka coordinator: joins during the initial delay extend it, up to the rebalance timeout") {
  Harness h;
  const int64_t start = h.now;
  std::vector<std::shared_ptr<JoinCall>> joins;
  joins.push_back(h.Join(Args()));
  h.Advance(1000);
  joins.push_back(h.Join(Args()));
  h.now = start + kDelay;  // the first member's delay is over, but another joined since
  h.coord.Tick();
  for (const auto& j : joins) CHECK_FALSE(j->done());
  // Members keep arriving just inside each delay: the wait still ends at the rebalance timeout.
  joins.push_back(h.Join(Args()));
  while (h.now + kDelay - 100 < start + kRebalance) {
    h.Advance(kDelay - 100);
    for (const auto& j : joins) REQUIRE_FALSE(j->done());
    joins.push_back(h.Join(Args()));
  }
  h.now = start + kRebalance - 1;
  h.coord.Tick();
  for (const auto& j : joins) CHECK_FALSE(j->done());
  h.Advance(1);
  int leaders = 0;
  std::set<int32_t> generations;
  for (const auto& j : joins) {
    REQUIRE(j->done());
    CHECK(j->out.error == Error::kNone);
    generations.insert(j->out.generation);
    if (!j->out.members.empty()) ++leaders;
    CHECK(j->out.leader == joins[0]->out.member_id);
  }
  CHECK(generations == std::set<int32_t>{1});
  CHECK(leaders == 1);
  CHECK(joins[0]->out.members.size() == joins.size());
}

TEST_CASE("Kafka coordinator: JoinGroup v4 hands a new member its id first (KIP-394)") {
  Harness h;
  JoinArgs a = Args();
  a.require_known_member_id = true;
  auto first = h.Join(a);
  REQUIRE(first->done());
  CHECK(first->out.error == Error::kMemberIdRequired);
  const std::string id = first->out.member_id;
  CHECK(id.rfind("client-", 0) == 0);
  CHECK(h.State() == "Empty");  // nothing joined yet
  CHECK(h.Members().empty());

  a.member_id = id;
  auto second = h.Join(a);
  CHECK_FALSE(second->done());
  h.Advance(kDelay + 1);
  REQUIRE(second->done());
  CHECK(second->out.error == Error::kNone);
  CHECK(second->out.member_id == id);
  CHECK(second->out.leader == id);
  CHECK(second->out.generation == 1);
  CHECK(first->calls == 1);

  SUBCASE("a static member needs no second round trip") {
    JoinArgs s = Static("instance-1");
    s.require_known_member_id = true;
    auto j = h.Join(s);
    CHECK_FALSE(j->done());  // no MEMBER_ID_REQUIRED: it is in, and the group rebalances for it
    CHECK(h.State() == "PreparingRebalance");
    auto again = h.Join(a);  // the first member rejoins
    REQUIRE(j->done());
    REQUIRE(again->done());
    CHECK(j->out.error == Error::kNone);
    CHECK(j->out.generation == 2);
  }
}

TEST_CASE("Kafka coordinator: a member id handed out but never used expires with the session") {
  Harness h;
  JoinArgs a = Args();
  a.require_known_member_id = true;
  auto first = h.Join(a);
  REQUIRE(first->out.error == Error::kMemberIdRequired);
  h.Advance(kSession + 1);
  a.member_id = first->out.member_id;
  auto late = h.Join(a);
  REQUIRE(late->done());
  CHECK(late->out.error == Error::kUnknownMemberId);
}

TEST_CASE("Kafka coordinator: two members, the leader assigns, SyncGroup waits for the leader") {
  Harness h;
  const int64_t start = h.now;
  auto ja = h.Join(Args("", Range({"orders"})));
  h.Advance(100);
  auto jb = h.Join(Args("", Range({"orders", "payments"})));
  h.now = start + kDelay;  // B's join extended the delay past A's
  h.coord.Tick();
  CHECK_FALSE(ja->done());
  h.now = start + 2 * kDelay + 1;
  h.coord.Tick();
  REQUIRE(ja->done());
  REQUIRE(jb->done());
  const std::string a = ja->out.member_id;
  const std::string b = jb->out.member_id;
  CHECK(a != b);
  const int32_t gen = ja->out.generation;
  CHECK(gen == 1);
  CHECK(jb->out.generation == gen);
  CHECK(ja->out.leader == a);
  CHECK(jb->out.leader == a);
  CHECK(ja->out.protocol_name == "range");
  CHECK(jb->out.protocol_name == "range");
  CHECK(jb->out.members.empty());  // only the leader gets the members
  REQUIRE(ja->out.members.size() == 2);
  for (const JoinedMember& m : ja->out.members) {
    if (m.member_id == a) {
      CHECK(m.metadata == Subscription({"orders"}));
    } else {
      CHECK(m.member_id == b);
      CHECK(m.metadata == Subscription({"orders", "payments"}));
    }
  }
  CHECK(h.State() == "CompletingRebalance");

  auto sb = h.Sync(b, gen);
  CHECK_FALSE(sb->done());  // parked until the leader's assignment
  CHECK(h.Heartbeat(b, gen) == Error::kNone);
  CHECK(h.Heartbeat(a, gen) == Error::kNone);
  h.Advance(1000);
  CHECK_FALSE(sb->done());

  auto sa = h.Sync(a, gen, {{a, "for-a"}, {b, "for-b"}});
  REQUIRE(sa->done());
  REQUIRE(sb->done());
  CHECK(sa->out.error == Error::kNone);
  CHECK(sb->out.error == Error::kNone);
  CHECK(sa->out.assignment == "for-a");
  CHECK(sb->out.assignment == "for-b");
  CHECK(h.State() == "Stable");

  // A Stable group hands a member its assignment again.
  auto again = h.Sync(b, gen);
  REQUIRE(again->done());
  CHECK(again->out.assignment == "for-b");

  auto v = h.coord.View(kGroup);
  REQUIRE(v);
  CHECK(v->protocol_type == "consumer");
  CHECK(v->protocol == "range");
  REQUIRE(v->members.size() == 2);
  for (const auto& m : v->members) {
    CHECK(m.client_id == "client");
    CHECK(m.client_host == "/127.0.0.1");
    CHECK(m.assignment == (m.member_id == a ? "for-a" : "for-b"));
  }
}

TEST_CASE("Kafka coordinator: members the leader leaves out get an empty assignment") {
  Harness h;
  const auto joined = JoinTwo(h, Args(), Args());
  const auto& ja = joined.first;
  const auto& jb = joined.second;
  auto sb = h.Sync(jb->out.member_id, 1);
  auto sa = h.Sync(ja->out.member_id, 1, {{ja->out.member_id, "all"}, {"stranger", "x"}});
  REQUIRE(sb->done());
  CHECK(sb->out.error == Error::kNone);
  CHECK(sb->out.assignment.empty());
  CHECK(sa->out.assignment == "all");
}

TEST_CASE("Kafka coordinator: JoinGroup refusals") {
  Harness h;
  SUBCASE("empty group id") {
    JoinArgs a = Args("", Range(), "");
    auto j = h.Join(a);
    REQUIRE(j->done());
    CHECK(j->out.error == Error::kInvalidGroupId);
  }
  SUBCASE("session timeout out of the broker's bounds") {
    JoinArgs low = Args();
    low.session_timeout_ms = Harness::DefaultOptions().min_session_timeout_ms - 1;
    JoinArgs high = Args();
    high.session_timeout_ms = Harness::DefaultOptions().max_session_timeout_ms + 1;
    auto j1 = h.Join(low);
    auto j2 = h.Join(high);
    REQUIRE(j1->done());
    REQUIRE(j2->done());
    CHECK(j1->out.error == Error::kInvalidSessionTimeout);
    CHECK(j2->out.error == Error::kInvalidSessionTimeout);
    CHECK(h.ensured.empty());
    CHECK(h.coord.List().empty());
  }
  SUBCASE("a first member without protocol type or protocols") {
    JoinArgs no_type = Args();
    no_type.protocol_type.clear();
    JoinArgs no_protocols = Args("", {});
    auto j1 = h.Join(no_type);
    auto j2 = h.Join(no_protocols);
    REQUIRE(j1->done());
    REQUIRE(j2->done());
    CHECK(j1->out.error == Error::kInconsistentGroupProtocol);
    CHECK(j2->out.error == Error::kInconsistentGroupProtocol);
    CHECK(h.coord.List().empty());  // no empty shell left behind
  }
  SUBCASE("another protocol type, or no protocol in common with the group") {
    auto first = h.Join(Args());
    JoinArgs other_type = Args();
    other_type.protocol_type = "connect";
    auto j1 = h.Join(other_type);
    auto j2 = h.Join(Args("", {{"sticky", "x"}}));
    REQUIRE(j1->done());
    REQUIRE(j2->done());
    CHECK(j1->out.error == Error::kInconsistentGroupProtocol);
    CHECK(j2->out.error == Error::kInconsistentGroupProtocol);
    auto j3 = h.Join(Args("", {{"sticky", "x"}, {"range", Subscription({"orders"})}}));
    CHECK_FALSE(j3->done());  // one protocol in common: accepted
    h.Advance(2 * kDelay + 1);
    REQUIRE(j3->done());
    CHECK(j3->out.error == Error::kNone);
    CHECK(j3->out.protocol_name == "range");
    CHECK(first->out.error == Error::kNone);
  }
  SUBCASE("metadata and ids beyond the limits") {
    CoordinatorOptions o = Harness::DefaultOptions();
    o.max_metadata_bytes = 100;
    Harness small(o);
    auto j1 = small.Join(Args("", {{"range", std::string(200, 'm')}}));
    REQUIRE(j1->done());
    CHECK(j1->out.error == Error::kInvalidRequest);
    JoinArgs long_client = Args();
    long_client.client_id = std::string(300, 'c');
    auto j2 = small.Join(long_client);
    REQUIRE(j2->done());
    CHECK(j2->out.error == Error::kInvalidRequest);
    JoinArgs long_instance = Static(std::string(300, 'i'));
    auto j3 = small.Join(long_instance);
    REQUIRE(j3->done());
    CHECK(j3->out.error == Error::kInvalidRequest);
    auto fits = small.Join(Args("", {{"range", std::string(50, 'm')}}));
    CHECK_FALSE(fits->done());
  }
  SUBCASE("an oversized assignment in SyncGroup") {
    CoordinatorOptions o = Harness::DefaultOptions();
    o.max_assignment_bytes = 10;
    Harness small(o);
    auto j = small.Join(Args());
    small.Advance(kDelay + 1);
    REQUIRE(j->done());
    const std::string id = j->out.member_id;
    auto s = small.Sync(id, 1, {{id, std::string(11, 'a')}});
    REQUIRE(s->done());
    CHECK(s->out.error == Error::kInvalidRequest);
    CHECK(small.State() == "CompletingRebalance");
  }
  SUBCASE("the store refuses the group id") {
    h.ensure_status = Status::InvalidArgument("a native group");
    auto j1 = h.Join(Args());
    REQUIRE(j1->done());
    CHECK(j1->out.error == Error::kInconsistentGroupProtocol);
    h.ensure_status = Status::IOError("disk");
    auto j2 = h.Join(Args());
    REQUIRE(j2->done());
    CHECK(j2->out.error == Error::kCoordinatorNotAvailable);
    CHECK(h.coord.List().empty());
  }
  SUBCASE("a known member id in a group nobody joined") {
    auto j = h.Join(Args("client-123"));
    REQUIRE(j->done());
    CHECK(j->out.error == Error::kUnknownMemberId);
    CHECK(h.coord.List().empty());
  }
}

TEST_CASE("Kafka coordinator: the group refuses members beyond group.max.size") {
  CoordinatorOptions o = Harness::DefaultOptions();
  o.max_members = 2;
  Harness h(o);
  SUBCASE("direct joins") {
    auto j1 = h.Join(Args());
    auto j2 = h.Join(Args());
    auto j3 = h.Join(Args());
    REQUIRE(j3->done());
    CHECK(j3->out.error == Error::kGroupMaxSizeReached);
    h.Advance(kDelay + 1);
    REQUIRE(j1->done());
    REQUIRE(j2->done());
    CHECK(j1->out.members.size() == 2);
  }
  SUBCASE("handed-out member ids count") {
    JoinArgs a = Args();
    a.require_known_member_id = true;
    auto p1 = h.Join(a);
    auto p2 = h.Join(a);
    auto p3 = h.Join(a);
    CHECK(p1->out.error == Error::kMemberIdRequired);
    CHECK(p2->out.error == Error::kMemberIdRequired);
    CHECK(p3->out.error == Error::kGroupMaxSizeReached);
    a.member_id = p1->out.member_id;
    auto j1 = h.Join(a);
    a.member_id = p2->out.member_id;
    auto j2 = h.Join(a);
    h.Advance(kDelay + 1);
    REQUIRE(j1->done());
    REQUIRE(j2->done());
    CHECK(j1->out.error == Error::kNone);
    CHECK(j2->out.error == Error::kNone);
  }
}

// ---- SyncGroup and Heartbeat errors -----------------------------------------------------------

TEST_CASE("Kafka coordinator: SyncGroup and Heartbeat errors") {
  Harness h;
  const StablePair p = MakeStablePair(h);
  const int32_t gen = p.generation;

  CHECK(h.Heartbeat(p.leader, gen) == Error::kNone);
  CHECK(h.Heartbeat(p.leader, gen + 1) == Error::kIllegalGeneration);
  CHECK(h.Heartbeat(p.follower, gen - 1) == Error::kIllegalGeneration);
  auto s1 = h.Sync(p.follower, gen + 1);
  REQUIRE(s1->done());
  CHECK(s1->out.error == Error::kIllegalGeneration);

  CHECK(h.Heartbeat("client-nobody", gen) == Error::kUnknownMemberId);
  auto s2 = h.Sync("client-nobody", gen);
  REQUIRE(s2->done());
  CHECK(s2->out.error == Error::kUnknownMemberId);
  CHECK(h.Heartbeat(p.leader, gen, std::nullopt, "no-such-group") == Error::kUnknownMemberId);
  auto s3 = h.Sync(p.leader, gen, {}, std::nullopt, "no-such-group");
  REQUIRE(s3->done());
  CHECK(s3->out.error == Error::kUnknownMemberId);

  // A third member: PreparingRebalance at the same generation.
  auto jc = h.Join(Args());
  CHECK(h.State() == "PreparingRebalance");
  CHECK(h.Heartbeat(p.leader, gen) == Error::kRebalanceInProgress);
  CHECK(h.Heartbeat(p.follower, gen + 1) == Error::kIllegalGeneration);  // generation first
  auto s4 = h.Sync(p.follower, gen);
  REQUIRE(s4->done());
  CHECK(s4->out.error == Error::kRebalanceInProgress);

  auto ja = h.Join(Args(p.leader));
  CHECK_FALSE(ja->done());
  auto jb = h.Join(Args(p.follower));  // the last one: everyone is in, no delay after the first
  REQUIRE(ja->done());
  REQUIRE(jb->done());
  REQUIRE(jc->done());
  CHECK(ja->out.generation == gen + 1);
  CHECK(jc->out.generation == gen + 1);
  CHECK(ja->out.leader == p.leader);
  CHECK(ja->out.members.size() == 3);
  CHECK(h.State() == "CompletingRebalance");
  CHECK(h.Heartbeat(p.follower, gen) == Error::kIllegalGeneration);
  CHECK(h.Heartbeat(p.follower, gen + 1) == Error::kNone);
}

TEST_CASE("Kafka coordinator: rejoining members, as Kafka answers them in each state") {
  Harness h;
  const StablePair p = MakeStablePair(h);
  const int32_t gen = p.generation;

  // A follower with unchanged metadata in a Stable group: the current generation, no rebalance.
  auto jf = h.Join(Args(p.follower));
  REQUIRE(jf->done());
  CHECK(jf->out.error == Error::kNone);
  CHECK(jf->out.generation == gen);
  CHECK(jf->out.leader == p.leader);
  CHECK(jf->out.members.empty());
  CHECK(h.State() == "Stable");

  // The leader rejoining a Stable group forces a rebalance (it may have seen a metadata change).
  auto jl = h.Join(Args(p.leader));
  CHECK_FALSE(jl->done());
  CHECK(h.State() == "PreparingRebalance");
  auto jf2 = h.Join(Args(p.follower));
  REQUIRE(jl->done());
  REQUIRE(jf2->done());
  CHECK(jl->out.generation == gen + 1);
  CHECK(h.State() == "CompletingRebalance");

  // Same metadata during CompletingRebalance: the same answer again (a lost response).
  auto jl3 = h.Join(Args(p.leader));
  REQUIRE(jl3->done());
  CHECK(jl3->out.generation == gen + 1);
  CHECK(jl3->out.members.size() == 2);
  auto jf3 = h.Join(Args(p.follower));
  REQUIRE(jf3->done());
  CHECK(jf3->out.generation == gen + 1);
  CHECK(jf3->out.members.empty());
  CHECK(h.State() == "CompletingRebalance");

  // Changed metadata during CompletingRebalance: a new rebalance; a parked sync is told so.
  auto sf = h.Sync(p.follower, gen + 1);
  CHECK_FALSE(sf->done());
  auto jl4 = h.Join(Args(p.leader, Range({"orders", "refunds"})));
  REQUIRE(sf->done());
  CHECK(sf->out.error == Error::kRebalanceInProgress);
  CHECK_FALSE(jl4->done());
  CHECK(h.State() == "PreparingRebalance");
  auto jf4 = h.Join(Args(p.follower));
  REQUIRE(jl4->done());
  REQUIRE(jf4->done());
  CHECK(jl4->out.generation == gen + 2);
  for (const JoinedMember& m : jl4->out.members) {
    if (m.member_id == p.leader) CHECK(m.metadata == Subscription({"orders", "refunds"}));
  }
}

// ---- timeouts ---------------------------------------------------------------------------------

TEST_CASE("Kafka coordinator: a silent member expires after its session timeout; the survivor leads") {
  Harness h;
  const StablePair p = MakeStablePair(h);
  const int32_t gen = p.generation;
  // The follower heartbeats every second; the leader went silent after its SyncGroup.
  EverySecond(h, kSession / 1000, [&] {
    CHECK(h.Heartbeat(p.follower, gen) == Error::kNone);
    CHECK(h.Members().count(p.leader) == 1);
  });
  h.Advance(1000);
  CHECK(h.Members() == std::set<std::string>{p.follower});
  CHECK(h.State() == "PreparingRebalance");
  CHECK(h.Heartbeat(p.leader, gen) == Error::kUnknownMemberId);
  CHECK(h.Heartbeat(p.follower, gen) == Error::kRebalanceInProgress);

  auto j = h.Join(Args(p.follower));
  REQUIRE(j->done());  // the only member rejoined: complete at once
  CHECK(j->out.error == Error::kNone);
  CHECK(j->out.generation == gen + 1);
  CHECK(j->out.leader == p.follower);
  REQUIRE(j->out.members.size() == 1);
  CHECK(j->out.members[0].member_id == p.follower);
  auto s = h.Sync(p.follower, gen + 1, {{p.follower, "everything"}});
  REQUIRE(s->done());
  CHECK(s->out.assignment == "everything");
  CHECK(h.State() == "Stable");
}

TEST_CASE("Kafka coordinator: a heartbeat applies expiries due now, before the timer runs") {
  Harness h;
  const StablePair p = MakeStablePair(h);
  // Both heartbeat in step; then the leader dies. The follower's heartbeat that comes just after
  // the leader's session ended learns of it at once, without waiting for the timer's Tick.
  h.Advance(1000);
  CHECK(h.Heartbeat(p.leader, p.generation) == Error::kNone);
  CHECK(h.Heartbeat(p.follower, p.generation) == Error::kNone);
  h.now += kSession;  // no Tick
  CHECK(h.Heartbeat(p.follower, p.generation) == Error::kNone);  // exactly at the deadline
  h.now += 1;
  CHECK(h.Heartbeat(p.follower, p.generation) == Error::kRebalanceInProgress);
  CHECK(h.Members() == std::set<std::string>{p.follower});
}

TEST_CASE("Kafka coordinator: a member that does not rejoin is dropped at the rebalance timeout") {
  Harness h;
  const StablePair p = MakeStablePair(h);
  const int32_t gen = p.generation;
  auto jc = h.Join(Args());  // a new member: rebalance
  REQUIRE(h.State() == "PreparingRebalance");
  CHECK(h.Heartbeat(p.leader, gen) == Error::kRebalanceInProgress);
  auto ja = h.Join(Args(p.leader));
  // The follower stays alive (heartbeats) but never rejoins. Members parked in JoinGroup need no
  // heartbeats: they wait well beyond their session timeout.
  EverySecond(h, kRebalance / 1000 - 1, [&] {
    CHECK(h.Heartbeat(p.follower, gen) == Error::kRebalanceInProgress);
    REQUIRE_FALSE(ja->done());
    REQUIRE_FALSE(jc->done());
  });
  h.Advance(1000);
  REQUIRE(ja->done());
  REQUIRE(jc->done());
  CHECK(ja->out.error == Error::kNone);
  CHECK(jc->out.error == Error::kNone);
  CHECK(ja->out.generation == gen + 1);
  CHECK(jc->out.generation == gen + 1);
  CHECK(ja->out.leader == p.leader);
  std::set<std::string> listed;
  for (const auto& m : ja->out.members) listed.insert(m.member_id);
  CHECK(listed == std::set<std::string>{p.leader, jc->out.member_id});
  CHECK(h.Heartbeat(p.follower, gen) == Error::kUnknownMemberId);
  CHECK(h.Members().count(p.follower) == 0);
}

TEST_CASE("Kafka coordinator: a leader that never syncs stalls the group no longer than the rebalance timeout") {
  Harness h;
  const auto joined = JoinTwo(h, Args(), Args());
  const auto& ja = joined.first;
  const auto& jb = joined.second;
  const std::string leader = ja->out.member_id;
  const std::string follower = jb->out.member_id;
  const int32_t gen = ja->out.generation;
  REQUIRE(ja->out.leader == leader);

  auto sb = h.Sync(follower, gen);
  CHECK_FALSE(sb->done());
  // The leader heartbeats (its process is alive) but never sends the assignment.
  EverySecond(h, kRebalance / 1000 - 1, [&] {
    CHECK(h.Heartbeat(leader, gen) == Error::kNone);
    REQUIRE_FALSE(sb->done());
  });
  h.Advance(1000);
  REQUIRE(sb->done());
  CHECK(sb->out.error == Error::kRebalanceInProgress);
  CHECK(h.Members() == std::set<std::string>{follower});
  CHECK(h.Heartbeat(leader, gen) == Error::kUnknownMemberId);
  CHECK(h.State() == "PreparingRebalance");

  // The timer runs again before the follower's JoinGroup arrives. Its session restarted when its
  // SyncGroup was answered (it could not heartbeat while parked): it is still a member.
  h.Advance(100);
  CHECK(h.Members() == std::set<std::string>{follower});
  auto j = h.Join(Args(follower));
  REQUIRE(j->done());
  CHECK(j->out.error == Error::kNone);
  CHECK(j->out.generation == gen + 1);
  CHECK(j->out.leader == follower);
  REQUIRE(j->out.members.size() == 1);
  auto s = h.Sync(follower, gen + 1, {{follower, "alone"}});
  REQUIRE(s->done());
  CHECK(s->out.error == Error::kNone);
  CHECK(s->out.assignment == "alone");
  CHECK(h.State() == "Stable");
}

TEST_CASE("Kafka coordinator: a follower parked in SyncGroup past its session timeout stays a member") {
  Harness h;
  auto ja = h.Join(Args());
  auto jb = h.Join(Args());
  h.Advance(2 * kDelay + 1);
  REQUIRE(jb->done());
  const std::string leader = ja->out.member_id;
  const std::string follower = jb->out.member_id;
  const int32_t gen = ja->out.generation;
  auto sb = h.Sync(follower, gen);
  // A slow assignor: the leader syncs after twice the follower's session timeout (within the
  // rebalance timeout), heartbeating meanwhile.
  EverySecond(h, 2 * kSession / 1000, [&] { CHECK(h.Heartbeat(leader, gen) == Error::kNone); });
  REQUIRE_FALSE(sb->done());
  auto sa = h.Sync(leader, gen, {{leader, "L"}, {follower, "F"}});
  REQUIRE(sb->done());
  CHECK(sb->out.error == Error::kNone);
  CHECK(sb->out.assignment == "F");
  h.Advance(100);
  CHECK(h.State() == "Stable");
  CHECK(h.Members() == std::set<std::string>{leader, follower});
  CHECK(h.Heartbeat(follower, gen) == Error::kNone);
  CHECK(sa->out.assignment == "L");
}

TEST_CASE("Kafka coordinator: a follower that got its join answer but never syncs is removed") {
  Harness h;
  auto ja = h.Join(Args());
  auto jb = h.Join(Args());
  h.Advance(2 * kDelay + 1);
  const std::string leader = ja->out.member_id;
  const std::string follower = jb->out.member_id;
  const int32_t gen = ja->out.generation;
  auto sa = h.Sync(leader, gen, {{leader, "L"}, {follower, "F"}});
  REQUIRE(sa->done());
  CHECK(h.State() == "Stable");
  EverySecond(h, kRebalance / 1000 - 1, [&] {
    CHECK(h.Heartbeat(leader, gen) == Error::kNone);
    CHECK(h.Heartbeat(follower, gen) == Error::kNone);
  });
  h.Advance(1000);
  CHECK(h.Members() == std::set<std::string>{leader});
  CHECK(h.Heartbeat(leader, gen) == Error::kRebalanceInProgress);
}

// ---- LeaveGroup -------------------------------------------------------------------------------

TEST_CASE("Kafka coordinator: LeaveGroup sends the group into a rebalance") {
  Harness h;
  const StablePair p = MakeStablePair(h);
  const int32_t gen = p.generation;
  CHECK(h.Leave("client-nobody") == Error::kUnknownMemberId);
  CHECK(h.Leave(p.leader, std::nullopt, "no-such-group") == Error::kUnknownMemberId);
  CHECK(h.State() == "Stable");

  CHECK(h.Leave(p.leader) == Error::kNone);
  CHECK(h.State() == "PreparingRebalance");
  CHECK(h.Members() == std::set<std::string>{p.follower});
  CHECK(h.Heartbeat(p.follower, gen) == Error::kRebalanceInProgress);
  auto j = h.Join(Args(p.follower));
  REQUIRE(j->done());
  CHECK(j->out.generation == gen + 1);
  CHECK(j->out.leader == p.follower);

  // The last member leaving empties the group.
  CHECK(h.Leave(p.follower) == Error::kNone);
  CHECK(h.State() == "Empty");
  CHECK(h.Members().empty());
}

TEST_CASE("Kafka coordinator: a member leaving during PreparingRebalance completes it for the rest") {
  Harness h;
  const StablePair p = MakeStablePair(h);
  auto jc = h.Join(Args());
  auto ja = h.Join(Args(p.leader));
  CHECK_FALSE(ja->done());
  CHECK(h.Leave(p.follower) == Error::kNone);
  REQUIRE(ja->done());
  REQUIRE(jc->done());
  CHECK(ja->out.generation == p.generation + 1);
  CHECK(ja->out.members.size() == 2);
}

TEST_CASE("Kafka coordinator: LeaveGroup v3 removes a static member by its instance id alone") {
  Harness h;
  const StablePair p = MakeStablePair(h, Static("ia"), Static("ib"));
  CHECK(h.Leave("", std::string("nope")) == Error::kUnknownMemberId);
  CHECK(h.Leave("client-wrong", std::string("ia")) == Error::kFencedInstanceId);
  CHECK(h.State() == "Stable");
  CHECK(h.Leave("", std::string("ib")) == Error::kNone);
  CHECK(h.Members() == std::set<std::string>{p.leader});
  CHECK(h.State() == "PreparingRebalance");
  CHECK(h.Heartbeat(p.follower, p.generation, std::string("ib")) == Error::kUnknownMemberId);
  // "ib" is free again: a new process with that instance id is a new member.
  auto j = h.Join(Static("ib"));
  CHECK_FALSE(j->done());
  auto ja = h.Join(Static("ia", p.leader));
  REQUIRE(j->done());
  REQUIRE(ja->done());
  CHECK(j->out.member_id != p.follower);
  CHECK(j->out.generation == p.generation + 1);
}

// ---- static membership (KIP-345) --------------------------------------------------------------

TEST_CASE("Kafka coordinator: a static member rejoining a Stable group replaces its old id without a rebalance") {
  Harness h;
  // The static member leads (it joined first); the other member is dynamic.
  const StablePair p = MakeStablePair(h, Static("ia"), Args());
  const int32_t gen = p.generation;
  const std::string old_id = p.leader;

  JoinArgs restart = Static("ia");
  restart.require_known_member_id = true;  // v4+: static members still join at once
  auto j = h.Join(restart);
  REQUIRE(j->done());
  CHECK(j->out.error == Error::kNone);
  const std::string new_id = j->out.member_id;
  CHECK(new_id != old_id);
  CHECK(j->out.generation == gen);
  CHECK(j->out.protocol_name == "range");
  // The old leader id, so that the new one does not run an assignment a Stable group ignores.
  CHECK(j->out.leader == old_id);
  CHECK(j->out.members.empty());
  CHECK(h.State() == "Stable");
  CHECK(h.Members() == std::set<std::string>{new_id, p.follower});

  // The old id is fenced everywhere it shows up with the instance id.
  CHECK(h.Heartbeat(old_id, gen, std::string("ia")) == Error::kFencedInstanceId);
  auto old_sync = h.Sync(old_id, gen, {}, std::string("ia"));
  REQUIRE(old_sync->done());
  CHECK(old_sync->out.error == Error::kFencedInstanceId);
  CHECK(h.Commit(old_id, gen, std::string("ia")) == Error::kFencedInstanceId);
  auto old_join = h.Join(Static("ia", old_id));
  REQUIRE(old_join->done());
  CHECK(old_join->out.error == Error::kFencedInstanceId);
  CHECK(h.Heartbeat(old_id, gen) == Error::kUnknownMemberId);

  // The new id syncs to its previous assignment; nobody else noticed.
  auto s = h.Sync(new_id, gen, {}, std::string("ia"));
  REQUIRE(s->done());
  CHECK(s->out.error == Error::kNone);
  CHECK(s->out.assignment == "assignment-L");
  EverySecond(h, 5, [&] {
    CHECK(h.Heartbeat(p.follower, gen) == Error::kNone);
    CHECK(h.Heartbeat(new_id, gen, std::string("ia")) == Error::kNone);
  });
  CHECK(h.Commit(new_id, gen, std::string("ia")) == Error::kNone);
  CHECK(h.State() == "Stable");
  auto v = h.coord.View(kGroup);
  REQUIRE(v);
  for (const auto& m : v->members) {
    if (m.member_id == new_id) {
      CHECK(m.instance_id == std::optional<std::string>("ia"));
      CHECK(m.assignment == "assignment-L");
    }
  }
}

TEST_CASE("Kafka coordinator: a static follower rejoining gets its own assignment back") {
  Harness h;
  const StablePair p = MakeStablePair(h, Args(), Static("ib"));
  auto j = h.Join(Static("ib"));
  REQUIRE(j->done());
  CHECK(j->out.error == Error::kNone);
  CHECK(j->out.leader == p.leader);
  CHECK(j->out.generation == p.generation);
  auto s = h.Sync(j->out.member_id, p.generation, {}, std::string("ib"));
  REQUIRE(s->done());
  CHECK(s->out.assignment == "assignment-F");
  CHECK(h.Heartbeat(p.leader, p.generation) == Error::kNone);
}

TEST_CASE("Kafka coordinator: a static rejoin that changes the group's protocol rebalances") {
  Harness h;
  auto j = h.Join(Static("ia", "", {{"range", "r"}, {"roundrobin", "rr"}}));
  h.Advance(kDelay + 1);
  REQUIRE(j->done());
  CHECK(j->out.protocol_name == "range");
  const std::string old_id = j->out.member_id;
  auto s = h.Sync(old_id, 1, {{old_id, "x"}});
  REQUIRE(s->done());

  auto again = h.Join(Static("ia", "", {{"roundrobin", "rr"}, {"range", "r"}}));
  REQUIRE(again->done());  // the only member, and it rejoined: complete at once
  CHECK(again->out.error == Error::kNone);
  CHECK(again->out.generation == 2);
  CHECK(again->out.protocol_name == "roundrobin");
  CHECK(again->out.leader == again->out.member_id);
  CHECK(again->out.member_id != old_id);
  CHECK(h.Heartbeat(old_id, 1, std::string("ia")) == Error::kFencedInstanceId);
}

TEST_CASE("Kafka coordinator: a static member that did not rejoin keeps its place until its session timeout") {
  Harness h;
  // The static member's session (5 s) is shorter than the rebalance timeout (30 s).
  JoinArgs s_args = Static("is");
  s_args.session_timeout_ms = 5000;
  const StablePair p = MakeStablePair(h, s_args, Args());
  const std::string s = p.leader;
  const std::string d = p.follower;
  const int32_t gen = p.generation;

  auto jn = h.Join(Args());  // a new member: rebalance
  CHECK(h.Heartbeat(d, gen) == Error::kRebalanceInProgress);
  auto jd = h.Join(Args(d));
  // The static member's process is alive (it heartbeats) but does not rejoin in time.
  EverySecond(h, kRebalance / 1000 - 1, [&] {
    CHECK(h.Heartbeat(s, gen, std::string("is")) == Error::kRebalanceInProgress);
  });
  h.Advance(1000);
  REQUIRE(jn->done());
  REQUIRE(jd->done());
  CHECK(jd->out.generation == gen + 1);
  CHECK(h.Members() == std::set<std::string>{s, d, jn->out.member_id});
  // A member that rejoined leads; its list includes the static member.
  const std::string leader = jd->out.leader;
  CHECK((leader == d || leader == jn->out.member_id));
  const JoinOutcome& lo = leader == d ? jd->out : jn->out;
  REQUIRE(lo.members.size() == 3);
  bool listed = false;
  for (const auto& m : lo.members) {
    if (m.member_id == s) {
      listed = true;
      CHECK(m.instance_id == std::optional<std::string>("is"));
      CHECK(m.metadata == Subscription({"orders"}));
    }
  }
  CHECK(listed);
  const std::string other = leader == d ? jn->out.member_id : d;
  auto so = h.Sync(other, gen + 1);
  auto sl = h.Sync(leader, gen + 1, {{leader, "1"}, {other, "2"}, {s, "3"}});
  REQUIRE(so->done());
  REQUIRE(sl->done());
  CHECK(h.State() == "Stable");
  CHECK(h.Heartbeat(s, gen, std::string("is")) == Error::kIllegalGeneration);

  // Silent from now on: it stays for its session timeout, then leaves (and the group rebalances).
  EverySecond(h, 4, [&] {
    CHECK(h.Heartbeat(leader, gen + 1) == Error::kNone);
    CHECK(h.Heartbeat(other, gen + 1) == Error::kNone);
    CHECK(h.Members().count(s) == 1);
  });
  h.Advance(2000);
  CHECK(h.Members().count(s) == 0);
  CHECK(h.Heartbeat(leader, gen + 1) == Error::kRebalanceInProgress);
}

TEST_CASE("Kafka coordinator: when no member rejoins, the rebalance waits for the static ones") {
  // Kafka's onCompleteJoin: if no member rejoined (only static members remain), the group stays
  // in PreparingRebalance for another rebalance timeout instead of starting a generation nobody
  // knows about.
  Harness h;
  const StablePair p = MakeStablePair(h, Static("ia"), Static("ib"));
  const int32_t gen = p.generation;
  CHECK(h.Leave("", std::string("ib")) == Error::kNone);
  CHECK(h.State() == "PreparingRebalance");
  EverySecond(h, kRebalance / 1000 + 5, [&] {
    CHECK(h.Heartbeat(p.leader, gen, std::string("ia")) == Error::kRebalanceInProgress);
  });
  CHECK(h.State() == "PreparingRebalance");
  CHECK(h.Members() == std::set<std::string>{p.leader});
  // Still the current generation: commits go through, as Kafka allows during PreparingRebalance.
  CHECK(h.Commit(p.leader, gen, std::string("ia")) == Error::kNone);
  SUBCASE("it rejoins: the rebalance completes at once") {
    auto j = h.Join(Static("ia", p.leader));
    REQUIRE(j->done());
    CHECK(j->out.error == Error::kNone);
    CHECK(j->out.generation == gen + 1);
    CHECK(j->out.leader == p.leader);
    CHECK(j->out.members.size() == 1);
  }
  SUBCASE("it goes silent: its session timeout removes it and the group is empty") {
    h.Advance(kSession + 1);
    CHECK(h.Members().empty());
    CHECK(h.State() == "Empty");
    CHECK(h.Heartbeat(p.leader, gen, std::string("ia")) == Error::kUnknownMemberId);
  }
}

TEST_CASE("Kafka coordinator: dynamic members that all fail to rejoin leave an empty group") {
  Harness h;
  const StablePair p = MakeStablePair(h);
  const int32_t gen = p.generation;
  h.coord.OnTopicChanged("orders");
  CHECK(h.State() == "PreparingRebalance");
  EverySecond(h, kRebalance / 1000, [&] {
    h.Heartbeat(p.leader, gen);
    h.Heartbeat(p.follower, gen);
  });
  CHECK(h.State() == "Empty");
  CHECK(h.Members().empty());
  CHECK(h.Heartbeat(p.leader, gen) == Error::kUnknownMemberId);
  auto d = h.coord.Describe(kGroup);
  REQUIRE(d);
  CHECK(d->generation == gen + 1);
}

// ---- protocol selection -----------------------------------------------------------------------

std::string JoinAllAndGetProtocol(Harness& h, const std::string& group,
                                  const std::vector<std::vector<std::string>>& prefs) {
  std::vector<std::shared_ptr<JoinCall>> joins;
  for (size_t i = 0; i < prefs.size(); ++i) {
    std::vector<ProtocolEntry> protocols;
    for (const std::string& name : prefs[i])
      protocols.push_back({name, "m" + std::to_string(i) + "-" + name});
    joins.push_back(h.Join(Args("", protocols, group)));
  }
  h.Advance(2 * kDelay + 1);
  std::string chosen;
  for (size_t i = 0; i < joins.size(); ++i) {
    REQUIRE(joins[i]->done());
    REQUIRE(joins[i]->out.error == Error::kNone);
    if (i == 0) chosen = joins[i]->out.protocol_name;
    CHECK(joins[i]->out.protocol_name == chosen);
  }
  // The leader sees each member's metadata for the chosen protocol.
  const JoinOutcome& leader = joins[0]->out;
  REQUIRE(leader.members.size() == prefs.size());
  for (const JoinedMember& m : leader.members) {
    for (size_t i = 0; i < joins.size(); ++i) {
      if (joins[i]->out.member_id == m.member_id)
        CHECK(m.metadata == "m" + std::to_string(i) + "-" + chosen);
    }
  }
  return chosen;
}

TEST_CASE("Kafka coordinator: the protocol is one every member supports, chosen by votes") {
  Harness h;
  CHECK(JoinAllAndGetProtocol(h, "votes", {{"range", "roundrobin"},
                                           {"roundrobin", "range"},
                                           {"roundrobin", "range"}}) == "roundrobin");
  CHECK(JoinAllAndGetProtocol(h, "candidates", {{"range", "roundrobin", "sticky"},
                                                {"sticky", "roundrobin"},
                                                {"sticky", "range", "roundrobin"}}) == "sticky");
  CHECK(JoinAllAndGetProtocol(h, "only-common", {{"range", "roundrobin"},
                                                 {"sticky", "roundrobin"}}) == "roundrobin");
  const std::string tie =
      JoinAllAndGetProtocol(h, "tie", {{"range", "roundrobin"}, {"roundrobin", "range"}});
  CHECK((tie == "range" || tie == "roundrobin"));
}

// ---- OffsetCommit rules -----------------------------------------------------------------------

TEST_CASE("Kafka coordinator: who may commit offsets, in each state") {
  Harness h;
  // Simple (standalone) consumers: generation -1, no member, into a group nobody joined.
  CHECK(h.Commit("", -1, std::nullopt, "standalone") == Error::kNone);

  const StablePair p = MakeStablePair(h);
  const int32_t gen = p.generation;
  CHECK(h.Commit("", -1) == Error::kUnknownMemberId);  // a simple commit into a live group
  CHECK(h.Commit("client-nobody", gen) == Error::kUnknownMemberId);
  CHECK(h.Commit(p.leader, gen) == Error::kNone);
  CHECK(h.Commit(p.follower, gen) == Error::kNone);
  CHECK(h.Commit(p.follower, gen - 1) == Error::kIllegalGeneration);
  CHECK(h.Commit(p.follower, gen + 1) == Error::kIllegalGeneration);

  // PreparingRebalance: members of the current generation may still commit.
  auto jc = h.Join(Args());
  REQUIRE(h.State() == "PreparingRebalance");
  CHECK(h.Commit(p.leader, gen) == Error::kNone);
  CHECK(h.Commit("", -1) == Error::kUnknownMemberId);

  auto ja = h.Join(Args(p.leader));
  auto jb = h.Join(Args(p.follower));
  REQUIRE(ja->done());
  REQUIRE(h.State() == "CompletingRebalance");
  // The member and generation are checked first, then the state.
  CHECK(h.Commit(p.leader, gen + 1) == Error::kRebalanceInProgress);
  CHECK(h.Commit(p.leader, gen) == Error::kIllegalGeneration);
  CHECK(h.Commit("client-nobody", gen + 1) == Error::kUnknownMemberId);
  CHECK(h.Commit("", -1) == Error::kUnknownMemberId);

  auto sl = h.Sync(p.leader, gen + 1, {});
  REQUIRE(sl->done());
  REQUIRE(h.State() == "Stable");
  CHECK(h.Commit(p.follower, gen + 1) == Error::kNone);

  // Everybody leaves: simple commits are welcome again, member commits are not.
  CHECK(h.Leave(p.leader) == Error::kNone);
  CHECK(h.Leave(p.follower) == Error::kNone);
  CHECK(h.Leave(jc->out.member_id) == Error::kNone);
  REQUIRE(h.State() == "Empty");
  CHECK(h.Commit("", -1) == Error::kNone);
  CHECK(h.Commit(p.leader, gen + 1) == Error::kUnknownMemberId);
}

TEST_CASE("Kafka coordinator: an offset commit counts as a heartbeat") {
  Harness h;
  const StablePair p = MakeStablePair(h);
  EverySecond(h, 3 * kSession / 1000, [&] {
    CHECK(h.Heartbeat(p.leader, p.generation) == Error::kNone);
    CHECK(h.Commit(p.follower, p.generation) == Error::kNone);  // never a heartbeat
  });
  CHECK(h.Members() == std::set<std::string>{p.leader, p.follower});
  CHECK(h.State() == "Stable");
}

// ---- admin views ------------------------------------------------------------------------------

TEST_CASE("Kafka coordinator: Forget refuses a group with members") {
  Harness h;
  const StablePair p = MakeStablePair(h);
  CHECK(h.coord.Forget(kGroup) == Error::kNonEmptyGroup);
  CHECK(h.coord.List() == std::vector<std::pair<std::string, std::string>>{{kGroup, "consumer"}});
  CHECK(h.Leave(p.leader) == Error::kNone);
  CHECK(h.coord.Forget(kGroup) == Error::kNonEmptyGroup);
  CHECK(h.Leave(p.follower) == Error::kNone);
  CHECK(h.coord.Forget(kGroup) == Error::kNone);
  CHECK(h.coord.List().empty());
  CHECK_FALSE(h.coord.View(kGroup).has_value());
  CHECK(h.coord.Forget("never-seen") == Error::kNone);

  SUBCASE("a member id handed out makes the group non-empty") {
    JoinArgs a = Args("", Range(), "pending");
    a.require_known_member_id = true;
    auto j = h.Join(a);
    REQUIRE(j->out.error == Error::kMemberIdRequired);
    CHECK(h.coord.Forget("pending") == Error::kNonEmptyGroup);
  }
}

TEST_CASE("Kafka coordinator: Subscribed reads the members' consumer subscriptions") {
  Harness h;
  MakeStablePair(h, Args("", Range({"orders", "payments"})), Args("", Range({"audit"})));
  CHECK(h.coord.Subscribed(kGroup, "orders"));
  CHECK(h.coord.Subscribed(kGroup, "payments"));
  CHECK(h.coord.Subscribed(kGroup, "audit"));
  CHECK_FALSE(h.coord.Subscribed(kGroup, "order"));
  CHECK_FALSE(h.coord.Subscribed(kGroup, "other"));
  CHECK_FALSE(h.coord.Subscribed("no-such-group", "orders"));

  // Another protocol type: its metadata is not a consumer subscription.
  JoinArgs connect = Args("", Range({"orders"}), "connect-group");
  connect.protocol_type = "connect";
  h.Join(connect);
  CHECK_FALSE(h.coord.Subscribed("connect-group", "orders"));
}

TEST_CASE("Kafka coordinator: Describe decodes the consumer assignments") {
  Harness h;
  auto ja = h.Join(Static("ia"));
  auto jb = h.Join(Args());
  h.Advance(2 * kDelay + 1);
  REQUIRE(jb->done());
  const std::string a = ja->out.member_id;
  const std::string b = jb->out.member_id;
  auto sa = h.Sync(a, 1,
                   {{a, Assignment({{"payments", {1}}, {"orders", {2, 0}}})},
                    {b, Assignment({{"orders", {1}}})}});
  REQUIRE(sa->done());

  auto d = h.coord.Describe(kGroup);
  REQUIRE(d);
  CHECK(d->state == "Stable");
  CHECK(d->protocol_type == "consumer");
  CHECK(d->assignor == "range");
  CHECK(d->generation == 1);
  REQUIRE(d->members.size() == 2);
  for (const broker::LiveGroupMember& m : d->members) {
    CHECK(m.client_id == "client");
    CHECK(m.host == "/127.0.0.1");
    if (m.member_id == a) {
      CHECK(m.instance_id == "ia");
      const std::vector<storage::TopicPartition> want = {
          {"orders", Partition(0)}, {"orders", Partition(2)}, {"payments", Partition(1)}};
      CHECK(m.assignment == want);
    } else {
      CHECK(m.member_id == b);
      CHECK(m.instance_id.empty());
      const std::vector<storage::TopicPartition> want = {{"orders", Partition(1)}};
      CHECK(m.assignment == want);
    }
  }
  CHECK_FALSE(h.coord.Describe("no-such-group").has_value());

  SUBCASE("bytes that do not parse decode to nothing") {
    auto j = h.Join(Args("", Range(), "garbage"));
    h.Advance(kDelay + 1);
    REQUIRE(j->done());
    auto s = h.Sync(j->out.member_id, 1, {{j->out.member_id, std::string("\x00\x00\x7f\xff\xff\xff", 6)}}, std::nullopt,
                    "garbage");
    REQUIRE(s->done());
    auto g = h.coord.Describe("garbage");
    REQUIRE(g);
    REQUIRE(g->members.size() == 1);
    CHECK(g->members[0].assignment.empty());
  }
}

TEST_CASE("Kafka coordinator: a topic change rebalances the groups subscribed to it, only those") {
  Harness h;
  auto j1 = h.Join(Args("", Range({"orders"}), "orders-group"));
  auto j2 = h.Join(Args("", Range({"payments"}), "payments-group"));
  h.Advance(kDelay + 1);
  REQUIRE(j1->done());
  REQUIRE(j2->done());
  const std::string m1 = j1->out.member_id;
  const std::string m2 = j2->out.member_id;
  REQUIRE(h.Sync(m1, 1, {{m1, "a"}}, std::nullopt, "orders-group")->done());
  REQUIRE(h.Sync(m2, 1, {{m2, "b"}}, std::nullopt, "payments-group")->done());
  auto pending = h.Join(Args("", Range({"orders"}), "forming-group"));  // PreparingRebalance

  h.coord.OnTopicChanged("orders");
  CHECK(h.State("orders-group") == "PreparingRebalance");
  CHECK(h.State("payments-group") == "Stable");
  CHECK(h.State("forming-group") == "PreparingRebalance");
  CHECK(h.Heartbeat(m1, 1, std::nullopt, "orders-group") == Error::kRebalanceInProgress);
  CHECK(h.Heartbeat(m2, 1, std::nullopt, "payments-group") == Error::kNone);
  auto again = h.Join(Args(m1, Range({"orders"}), "orders-group"));
  REQUIRE(again->done());
  CHECK(again->out.generation == 2);
  CHECK_FALSE(pending->done());

  h.coord.OnTopicChanged("unrelated");
  CHECK(h.State("payments-group") == "Stable");
}

TEST_CASE("Kafka coordinator: FailParked answers every parked join and sync") {
  Harness h;
  const auto joined = JoinTwo(h, Args(), Args());
  const auto& ja = joined.first;
  const auto& jb = joined.second;
  auto parked_sync = h.Sync(jb->out.member_id, 1);  // the leader never syncs
  auto fresh = h.Join(Args("", Range(), "fresh"));  // in its initial delay
  REQUIRE_FALSE(parked_sync->done());
  REQUIRE_FALSE(fresh->done());

  h.coord.FailParked(Error::kNotCoordinator);
  REQUIRE(parked_sync->done());
  REQUIRE(fresh->done());
  CHECK(parked_sync->out.error == Error::kNotCoordinator);
  CHECK(fresh->out.error == Error::kNotCoordinator);
  CHECK_FALSE(fresh->out.member_id.empty());
  h.Advance(kRebalance + 1);
  CHECK(parked_sync->calls == 1);
  CHECK(fresh->calls == 1);
  CHECK(ja->calls == 1);
}

// ---- consumer-protocol parsers ----------------------------------------------------------------

TEST_CASE("Kafka coordinator: ParseSubscriptionTopics reads topics and refuses broken bytes") {
  const std::string good = Subscription({"orders", "payments"});
  auto topics = ParseSubscriptionTopics(good);
  REQUIRE(topics);
  CHECK(*topics == std::vector<std::string>{"orders", "payments"});
  CHECK(ParseSubscriptionTopics(Subscription({}))->empty());

  // v1 adds owned partitions after the user data; the topics read the same.
  Bytes v1;
  v1.I16(1).I32(1).Str("orders").I32(-1).I32(1).Str("orders").I32(1).I32(0);
  REQUIRE(ParseSubscriptionTopics(v1.str()));
  CHECK(*ParseSubscriptionTopics(v1.str()) == std::vector<std::string>{"orders"});

  // Every truncation inside the version, count or topics.
  const size_t topics_end = 2 + 4 + (2 + 6) + (2 + 8);
  for (size_t n = 0; n < topics_end; ++n)
    CHECK_FALSE(ParseSubscriptionTopics(std::string_view(good).substr(0, n)).has_value());

  CHECK_FALSE(ParseSubscriptionTopics(Bytes().I16(0).I32(0x7fffffff).str()).has_value());  // huge count
  CHECK_FALSE(ParseSubscriptionTopics(Bytes().I16(0).I32(-1).str()).has_value());          // null array
  CHECK_FALSE(ParseSubscriptionTopics(Bytes().I16(0).I32(-7).str()).has_value());          // negative
  CHECK_FALSE(ParseSubscriptionTopics(Bytes().I16(-1).I32(0).str()).has_value());          // bad version
  CHECK_FALSE(ParseSubscriptionTopics(Bytes().I16(0).I32(1).I16(0x7fff).str()).has_value());  // long string
  CHECK_FALSE(ParseSubscriptionTopics(Bytes().I16(0).I32(1).I16(-1).str()).has_value());      // null string
}

TEST_CASE("Kafka coordinator: ParseAssignment reads partitions and refuses broken bytes") {
  const std::string good = Assignment({{"payments", {1}}, {"orders", {2, 0}}});
  auto parts = ParseAssignment(good);
  REQUIRE(parts);
  const std::vector<storage::TopicPartition> want = {
      {"orders", Partition(0)}, {"orders", Partition(2)}, {"payments", Partition(1)}};
  CHECK(*parts == want);
  REQUIRE(ParseAssignment(""));
  CHECK(ParseAssignment("")->empty());  // a member the leader gave nothing

  const size_t parts_end = good.size() - 4;  // before the user data
  for (size_t n = 1; n < parts_end; ++n)
    CHECK_FALSE(ParseAssignment(std::string_view(good).substr(0, n)).has_value());

  CHECK_FALSE(ParseAssignment(Bytes().I16(0).I32(0x7fffffff).str()).has_value());
  CHECK_FALSE(ParseAssignment(Bytes().I16(0).I32(1).Str("t").I32(0x7fffffff).str()).has_value());
  CHECK_FALSE(ParseAssignment(Bytes().I16(0).I32(1).Str("t").I32(-2).str()).has_value());
  CHECK_FALSE(ParseAssignment(Bytes().I16(0).I32(-3).str()).has_value());
  CHECK_FALSE(ParseAssignment(Bytes().I16(-1).I32(0).str()).has_value());
}

TEST_CASE("Kafka coordinator: the parsers survive random and mutated bytes") {
  std::mt19937 rng(20240607);
  const std::vector<std::string> seeds = {Subscription({"orders", "payments"}),
                                          Assignment({{"orders", {0, 1, 2}}, {"x", {7}}})};
  size_t parsed = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string bytes;
    if (i % 2 == 0) {
      bytes.resize(rng() % 48);
      for (char& c : bytes) c = static_cast<char>(rng() & 0xff);
    } else {
      bytes = seeds[rng() % seeds.size()];
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f) bytes[rng() % bytes.size()] = static_cast<char>(rng() & 0xff);
      if (rng() % 3 == 0) bytes.resize(rng() % (bytes.size() + 1));
    }
    if (auto t = ParseSubscriptionTopics(bytes)) parsed += t->size();
    if (auto a = ParseAssignment(bytes)) parsed += a->size();
  }
  CHECK(parsed > 0);  // some mutations still parse; none crashed
}

}  // namespace
}  // namespace runnel::kafka
