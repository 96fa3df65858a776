#include "coordinator.h"

#include <algorithm>
#include <random>

#include "runnel/kafka/codec.h"

namespace runnel::kafka {
namespace {

constexpr std::string_view kConsumerProtocol = "consumer";

bool SameProtocols(const std::vector<ProtocolEntry>& a, const std::vector<ProtocolEntry>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].name != b[i].name || a[i].metadata != b[i].metadata) return false;
  return true;
}

// Kafka allows any group id but an empty one; control characters only break logs and tools.
bool ValidGroupId(const std::string& id) {
  if (id.empty() || id.size() > 249) return false;
  return std::none_of(id.begin(), id.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
  });
}

// Queues `done`'s answer: `o` as it is.
void Answer(std::vector<std::function<void()>>& out, GroupCoordinator::JoinDone done, JoinOutcome o) {
  out.push_back([done = std::move(done), o = std::move(o)]() mutable { done(std::move(o)); });
}
// Queues `done`'s answer: the error, for `member_id`.
void AnswerError(std::vector<std::function<void()>>& out, GroupCoordinator::JoinDone done,
                 Error error, std::string member_id) {
  JoinOutcome o;
  o.error = error;
  o.member_id = std::move(member_id);
  Answer(out, std::move(done), std::move(o));
}

}  // namespace

std::optional<std::vector<std::string>> ParseSubscriptionTopics(std::string_view metadata) {
  Reader r(metadata);
  int16_t version = 0;
  int32_t n = 0;
  if (!r.ReadInt16(&version) || version < 0 || !r.ReadArrayLength(false, false, 2, &n))
    return std::nullopt;
  std::vector<std::string> topics;
  topics.reserve(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) {
    std::string t;
    if (!r.ReadString(false, &t)) return std::nullopt;
    topics.push_back(std::move(t));
  }
  return topics;  // user data and owned partitions follow; not needed here
}

std::optional<std::vector<storage::TopicPartition>> ParseAssignment(std::string_view assignment) {
  if (assignment.empty()) return std::vector<storage::TopicPartition>{};
  Reader r(assignment);
  int16_t version = 0;
  int32_t topics = 0;
  if (!r.ReadInt16(&version) || version < 0 || !r.ReadArrayLength(false, false, 6, &topics))
    return std::nullopt;
  std::vector<storage::TopicPartition> out;
  for (int32_t t = 0; t < topics; ++t) {
    std::string name;
    int32_t parts = 0;
    if (!r.ReadString(false, &name) || !r.ReadArrayLength(false, false, 4, &parts))
      return std::nullopt;
    for (int32_t p = 0; p < parts; ++p) {
      int32_t partition = 0;
      if (!r.ReadInt32(&partition)) return std::nullopt;
      out.push_back({name, Partition(partition)});
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

GroupCoordinator::GroupCoordinator(CoordinatorOptions options, NowFn now, EnsureFn ensure)
    : options_(options), now_(std::move(now)), ensure_(std::move(ensure)) {}

std::string_view GroupCoordinator::StateName(State s) {
  switch (s) {
    case State::kEmpty:
      return "Empty";
    case State::kPreparingRebalance:
      return "PreparingRebalance";
    case State::kCompletingRebalance:
      return "CompletingRebalance";
    case State::kStable:
      return "Stable";
  }
  return "Dead";
}

void GroupCoordinator::Run(Deferred& out) {
  for (auto& fn : out) fn();
  out.clear();
}

GroupCoordinator::Group* GroupCoordinator::Find(const std::string& id) {
  auto it = groups_.find(id);
  return it == groups_.end() ? nullptr : &it->second;
}

std::string GroupCoordinator::NewMemberId(const std::string& client_id) {
  // client id + "-" + a random 128-bit suffix, as Kafka builds them.
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[40];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(rng()),
                static_cast<unsigned long long>(rng() ^ ++id_seq_));
  return client_id + "-" + buf;
}

Error GroupCoordinator::CheckMember(const Group& g, const std::string& member_id,
                                    const std::optional<std::string>& instance_id) const {
  if (instance_id) {
    auto it = g.static_members.find(*instance_id);
    if (it != g.static_members.end() && it->second != member_id) return Error::kFencedInstanceId;
  }
  if (!g.members.count(member_id)) return Error::kUnknownMemberId;
  return Error::kNone;
}

bool GroupCoordinator::SupportsProtocols(const Group& g, const std::string& type,
                                         const std::vector<ProtocolEntry>& protocols) const {
  if (type.empty() || protocols.empty()) return false;
  if (g.members.empty()) return true;
  if (type != g.protocol_type) return false;
  // Some protocol of the newcomer that every current member supports.
  for (const ProtocolEntry& p : protocols) {
    const bool everyone = std::all_of(g.members.begin(), g.members.end(), [&](const auto& kv) {
      return MetadataFor(kv.second, p.name) != nullptr;
    });
    if (everyone) return true;
  }
  return false;
}

const std::string* GroupCoordinator::MetadataFor(const Member& m, const std::string& protocol) const {
  for (const ProtocolEntry& p : m.protocols)
    if (p.name == protocol) return &p.metadata;
  return nullptr;
}

std::string GroupCoordinator::SelectProtocol(const Group& g) const {
  // The candidates every member supports, in the first member's order of preference; each
  // member votes for its own most preferred candidate; most votes wins, ties go to the earlier.
  if (g.members.empty()) return {};
  std::vector<std::string> candidates;
  for (const ProtocolEntry& p : g.members.begin()->second.protocols) {
    const bool everyone = std::all_of(g.members.begin(), g.members.end(), [&](const auto& kv) {
      return MetadataFor(kv.second, p.name) != nullptr;
    });
    if (everyone) candidates.push_back(p.name);
  }
  if (candidates.empty()) return {};
  std::map<std::string, int> votes;
  for (const auto& [id, m] : g.members) {
    for (const ProtocolEntry& p : m.protocols) {
      if (std::find(candidates.begin(), candidates.end(), p.name) != candidates.end()) {
        ++votes[p.name];
        break;
      }
    }
  }
  std::string best = candidates.front();
  for (const std::string& c : candidates)
    if (votes[c] > votes[best]) best = c;
  return best;
}

int32_t GroupCoordinator::RebalanceTimeout(const Group& g) const {
  int32_t t = 0;
  for (const auto& [id, m] : g.members) t = std::max(t, m.rebalance_timeout_ms);
  return t;
}

JoinOutcome GroupCoordinator::CurrentJoinOutcome(const Group& g, const Member& m,
                                                 bool with_members) const {
  JoinOutcome o;
  o.generation = g.generation;
  o.protocol_name = g.protocol;
  o.leader = g.leader;
  o.member_id = m.id;
  if (with_members) {
    for (const auto& [id, other] : g.members) {
      const std::string* md = MetadataFor(other, g.protocol);
      o.members.push_back({id, other.instance_id, md ? *md : std::string()});
    }
  }
  return o;
}

// ---- JoinGroup --------------------------------------------------------------------------------

void GroupCoordinator::Join(JoinArgs args, JoinDone done) {
  auto fail = [&](Error e) {
    Deferred out;
    AnswerError(out, std::move(done), e, args.member_id);
    Run(out);
  };
  if (!ValidGroupId(args.group_id)) return fail(Error::kInvalidGroupId);
  if (args.session_timeout_ms < options_.min_session_timeout_ms ||
      args.session_timeout_ms > options_.max_session_timeout_ms)
    return fail(Error::kInvalidSessionTimeout);
  if (args.rebalance_timeout_ms <= 0) args.rebalance_timeout_ms = args.session_timeout_ms;
  size_t metadata_bytes = 0;
  for (const ProtocolEntry& p : args.protocols) metadata_bytes += p.name.size() + p.metadata.size();
  if (metadata_bytes > options_.max_metadata_bytes || args.member_id.size() > options_.max_id_bytes ||
      args.client_id.size() > options_.max_id_bytes ||
      (args.instance_id && args.instance_id->size() > options_.max_id_bytes))
    return fail(Error::kInvalidRequest);
  if (args.instance_id && args.instance_id->empty()) args.instance_id.reset();

  // The store's record of the group (created on first use, cheap after): it fixes the group
  // id's protocol, and brings back a group an operator deleted while it was empty.
  if (Status s = ensure_(args.group_id); !s.ok()) {
    return fail(s.code() == StatusCode::kInvalidArgument ? Error::kInconsistentGroupProtocol
                                                         : Error::kCoordinatorNotAvailable);
  }

  Deferred out;
  {
    std::lock_guard lk(mu_);
    const int64_t now = now_();
    Group& g = groups_[args.group_id];
    if (g.id.empty()) g.id = args.group_id;
    if (!SupportsProtocols(g, args.protocol_type, args.protocols)) {
      AnswerError(out, std::move(done), Error::kInconsistentGroupProtocol, args.member_id);
    } else if (args.member_id.empty()) {
      // A new member (or a static member back under a new id).
      std::optional<std::string> old_static;
      if (args.instance_id) {
        if (auto it = g.static_members.find(*args.instance_id); it != g.static_members.end())
          old_static = it->second;
      }
      if (old_static) {
        StaticRejoin(g, args, *old_static, std::move(done), now, out);
      } else if (g.members.size() + g.pending_members.size() >= options_.max_members) {
        AnswerError(out, std::move(done), Error::kGroupMaxSizeReached, "");
      } else if (args.require_known_member_id && !args.instance_id) {
        // KIP-394: hand out the id first; the member joins with it in a second request.
        std::string id = NewMemberId(args.client_id);
        g.pending_members[id] = now + args.session_timeout_ms;
        AnswerError(out, std::move(done), Error::kMemberIdRequired, id);
      } else {
        AddMember(g, args, NewMemberId(args.client_id), std::move(done), now, out);
      }
    } else if (auto pending = g.pending_members.find(args.member_id);
               pending != g.pending_members.end()) {
      g.pending_members.erase(pending);
      AddMember(g, args, args.member_id, std::move(done), now, out);
    } else if (Error e = CheckMember(g, args.member_id, args.instance_id); e != Error::kNone) {
      AnswerError(out, std::move(done), e, args.member_id);
    } else {
      UpdateMember(g, g.members.at(args.member_id), args, std::move(done), now, out);
    }
    if (g.members.empty() && g.pending_members.empty() && g.state == State::kEmpty &&
        g.generation == 0 && g.protocol_type.empty()) {
      // Nothing joined (an inconsistent first join): keep no empty shell around.
      groups_.erase(args.group_id);
    }
  }
  Run(out);
}

void GroupCoordinator::AddMember(Group& g, JoinArgs& args, const std::string& member_id,
                                 JoinDone done, int64_t now, Deferred& out) {
  Member& m = g.members[member_id];
  m.id = member_id;
  m.instance_id = args.instance_id;
  m.client_id = args.client_id;
  m.host = args.client_host;
  if (g.members.size() == 1) g.protocol_type = args.protocol_type;
  if (m.instance_id) g.static_members[*m.instance_id] = member_id;
  if (g.leader.empty()) g.leader = member_id;
  UpdateMember(g, m, args, std::move(done), now, out);
}

void GroupCoordinator::SetMember(Group& g, Member& m, JoinArgs& args, int64_t now) {
  m.session_timeout_ms = args.session_timeout_ms;
  m.rebalance_timeout_ms = args.rebalance_timeout_ms;
  m.client_id = args.client_id;
  m.host = args.client_host;
  m.protocols = std::move(args.protocols);
  m.topics.clear();
  if (g.protocol_type == kConsumerProtocol) {
    for (const ProtocolEntry& p : m.protocols) {
      if (auto topics = ParseSubscriptionTopics(p.metadata))
        m.topics.insert(topics->begin(), topics->end());
    }
  }
  m.last_heartbeat_ms = now;
}

void GroupCoordinator::UpdateMember(Group& g, Member& m, JoinArgs& args, JoinDone done,
                                    int64_t now, Deferred& out) {
  const bool changed = !SameProtocols(m.protocols, args.protocols);
  SetMember(g, m, args, now);
  if (m.awaiting_join) {
    // The same member joined again before its previous join was answered: the old request is
    // superseded (its connection is gone or it gave up).
    AnswerError(out, std::move(m.awaiting_join), Error::kUnknownMemberId, m.id);
  }
  // Nothing changed for a follower of a Stable group, or for anyone while the assignment is
  // being made (its join answer was lost): the same answer again, no rebalance.
  const bool same_answer = !changed && (g.state == State::kCompletingRebalance ||
                                        (g.state == State::kStable && m.id != g.leader));
  if (same_answer) {
    const bool with_members = g.state == State::kCompletingRebalance && m.id == g.leader;
    return Answer(out, std::move(done), CurrentJoinOutcome(g, m, with_members));
  }
  m.awaiting_join = std::move(done);
  if (g.state != State::kPreparingRebalance) {
    // Empty: the first member; Stable or CompletingRebalance: the leader rejoining or a changed
    // subscription needs a new assignment.
    PrepareRebalance(g, now, out);
  } else if (g.initial_join) {
    g.join_deadline_ms = std::min(now + options_.initial_rebalance_delay_ms, g.initial_join_limit_ms);
  }
  MaybeCompleteJoin(g, now, false, out);
}

void GroupCoordinator::StaticRejoin(Group& g, JoinArgs& args, const std::string& old_id,
                                    JoinDone done, int64_t now, Deferred& out) {
  // The instance's process restarted: a new member id replaces the old one, which is fenced.
  Member old = std::move(g.members.at(old_id));
  g.members.erase(old_id);
  g.pending_sync.erase(old_id);
  if (old.awaiting_join) {
    AnswerError(out, std::move(old.awaiting_join), Error::kFencedInstanceId, old_id);
  }
  if (old.awaiting_sync) {
    out.push_back([fn = std::move(old.awaiting_sync)] { fn({Error::kFencedInstanceId, {}}); });
  }
  const std::string id = NewMemberId(args.client_id);
  Member& m = g.members[id];
  m.id = id;
  m.instance_id = args.instance_id;
  m.assignment = std::move(old.assignment);
  m.protocols = old.protocols;
  g.static_members[*args.instance_id] = id;
  const bool was_leader = g.leader == old_id;
  if (was_leader) g.leader = id;
  if (g.state != State::kStable) {
    m.protocols.clear();  // UpdateMember then treats it as changed and rebalances
    UpdateMember(g, m, args, std::move(done), now, out);
    return;
  }
  // Stable: the new protocols are taken; unless they change the group's protocol there is no
  // rebalance, and the member syncs to get its previous assignment. Like Kafka, the answer names
  // the old member id as leader even when this member leads, so that it does not compute an
  // assignment that a Stable group would not hand out.
  SetMember(g, m, args, now);
  if (SelectProtocol(g) == g.protocol) {
    JoinOutcome o = CurrentJoinOutcome(g, m, false);
    if (was_leader) o.leader = old_id;
    return Answer(out, std::move(done), std::move(o));
  }
  m.awaiting_join = std::move(done);
  PrepareRebalance(g, now, out);
  MaybeCompleteJoin(g, now, false, out);
}

void GroupCoordinator::PrepareRebalance(Group& g, int64_t now, Deferred& out) {
  if (g.state == State::kCompletingRebalance)
    FailAwaitingSync(g, Error::kRebalanceInProgress, now, out);
  if (g.state == State::kCompletingRebalance || g.state == State::kStable) {
    for (auto& [id, m] : g.members) m.assignment.clear();
  }
  g.initial_join = g.state == State::kEmpty;
  const int64_t timeout = RebalanceTimeout(g);
  if (g.initial_join) {
    g.initial_join_limit_ms = now + timeout;
    g.join_deadline_ms = std::min(now + options_.initial_rebalance_delay_ms, g.initial_join_limit_ms);
  } else {
    g.join_deadline_ms = now + timeout;
  }
  g.pending_sync.clear();
  g.state = State::kPreparingRebalance;
}

void GroupCoordinator::MaybeCompleteJoin(Group& g, int64_t now, bool deadline_passed,
                                         Deferred& out) {
  if (g.state != State::kPreparingRebalance) return;
  if (g.initial_join) {
    if (now < g.join_deadline_ms && !deadline_passed) return;
  } else if (!deadline_passed) {
    const bool all_joined = std::all_of(g.members.begin(), g.members.end(), [](const auto& kv) {
      return static_cast<bool>(kv.second.awaiting_join);
    });
    if (!all_joined || !g.pending_members.empty()) return;
  }
  CompleteJoin(g, now, out);
}

void GroupCoordinator::CompleteJoin(Group& g, int64_t now, Deferred& out) {
  // Dynamic members that did not rejoin in time are dropped; static ones keep their place (their
  // session timeout decides) and take part in the assignment.
  for (auto it = g.members.begin(); it != g.members.end();) {
    if (!it->second.awaiting_join && !it->second.instance_id) {
      it = g.members.erase(it);
    } else {
      ++it;
    }
  }
  g.initial_join = false;
  if (!g.members.empty() && std::none_of(g.members.begin(), g.members.end(), [](const auto& kv) {
        return static_cast<bool>(kv.second.awaiting_join);
      })) {
    // Only static members that did not rejoin remain: like Kafka, start no generation nobody
    // would be told about; wait another rebalance timeout (their session timeouts still apply).
    g.join_deadline_ms = now + RebalanceTimeout(g);
    return;
  }
  g.pending_members.clear();
  ++g.generation;
  if (g.members.empty()) {
    g.state = State::kEmpty;
    g.protocol.clear();
    g.leader.clear();
    return;
  }
  if (!g.members.count(g.leader) || !g.members.at(g.leader).awaiting_join) {
    // A leader that did not rejoin cannot assign: take a member that did.
    for (const auto& [id, m] : g.members) {
      if (m.awaiting_join) {
        g.leader = id;
        break;
      }
    }
  }
  g.protocol = SelectProtocol(g);
  g.state = State::kCompletingRebalance;
  g.sync_deadline_ms = now + RebalanceTimeout(g);
  for (auto& [id, m] : g.members) {
    m.last_heartbeat_ms = now;
    if (!m.awaiting_join) continue;
    Answer(out, std::move(m.awaiting_join), CurrentJoinOutcome(g, m, id == g.leader));
    m.awaiting_join = nullptr;
    g.pending_sync.insert(id);
  }
}

void GroupCoordinator::FailAwaitingSync(Group& g, Error error, int64_t now, Deferred& out) {
  for (auto& [id, m] : g.members) {
    if (!m.awaiting_sync) continue;
    out.push_back([fn = std::move(m.awaiting_sync), error] { fn({error, {}}); });
    m.awaiting_sync = nullptr;
    m.last_heartbeat_ms = now;
  }
}

void GroupCoordinator::RemoveMember(Group& g, const std::string& member_id, Error why,
                                    int64_t now, Deferred& out) {
  auto it = g.members.find(member_id);
  if (it == g.members.end()) return;
  Member& m = it->second;
  if (m.awaiting_join) {
    AnswerError(out, std::move(m.awaiting_join), why, member_id);
  }
  if (m.awaiting_sync) out.push_back([fn = std::move(m.awaiting_sync), why] { fn({why, {}}); });
  if (m.instance_id) g.static_members.erase(*m.instance_id);
  g.pending_sync.erase(member_id);
  g.members.erase(it);
  if (g.leader == member_id) g.leader = g.members.empty() ? std::string() : g.members.begin()->first;
  switch (g.state) {
    case State::kStable:
    case State::kCompletingRebalance:
      PrepareRebalance(g, now, out);
      MaybeCompleteJoin(g, now, false, out);
      break;
    case State::kPreparingRebalance:
      MaybeCompleteJoin(g, now, false, out);
      break;
    case State::kEmpty:
      break;
  }
}

// ---- SyncGroup, Heartbeat, LeaveGroup, commits --------------------------------------------------

void GroupCoordinator::Sync(const std::string& group, int32_t generation,
                            const std::string& member_id,
                            const std::optional<std::string>& instance_id,
                            std::vector<std::pair<std::string, std::string>> assignments,
                            SyncDone done) {
  Deferred out;
  {
    std::lock_guard lk(mu_);
    const int64_t now = now_();
    Group* g = Find(group);
    Error e = !g ? Error::kUnknownMemberId : CheckMember(*g, member_id, instance_id);
    if (e == Error::kNone && generation != g->generation) e = Error::kIllegalGeneration;
    for (const auto& [id, bytes] : assignments)
      if (bytes.size() > options_.max_assignment_bytes) e = Error::kInvalidRequest;
    if (e == Error::kNone) {
      Member& m = g->members.at(member_id);
      m.last_heartbeat_ms = now;
      switch (g->state) {
        case State::kEmpty:
          e = Error::kUnknownMemberId;
          break;
        case State::kPreparingRebalance:
          e = Error::kRebalanceInProgress;
          break;
        case State::kCompletingRebalance:
          if (m.awaiting_sync) {
            out.push_back([fn = std::move(m.awaiting_sync)] { fn({Error::kUnknownMemberId, {}}); });
          }
          m.awaiting_sync = std::move(done);
          g->pending_sync.erase(member_id);
          if (member_id == g->leader) {
            // The assignment: members the leader left out get an empty one.
            for (auto& [id, other] : g->members) other.assignment.clear();
            for (auto& [id, bytes] : assignments) {
              if (auto it = g->members.find(id); it != g->members.end())
                it->second.assignment = std::move(bytes);
            }
            g->state = State::kStable;
            for (auto& [id, other] : g->members) {
              if (!other.awaiting_sync) continue;
              out.push_back([fn = std::move(other.awaiting_sync), a = other.assignment]() mutable {
                fn({Error::kNone, std::move(a)});
              });
              other.awaiting_sync = nullptr;
              // Parked, it could not heartbeat: its session restarts now (as Kafka's
              // propagateAssignment does), or the next Tick would expire a member that waited
              // longer than its session timeout for a slow leader.
              other.last_heartbeat_ms = now;
            }
          }
          break;
        case State::kStable:
          g->pending_sync.erase(member_id);
          out.push_back([done = std::move(done), a = m.assignment]() mutable {
            done({Error::kNone, std::move(a)});
          });
          break;
      }
    }
    if (e != Error::kNone && done) out.push_back([done = std::move(done), e] { done({e, {}}); });
  }
  Run(out);
}

Error GroupCoordinator::Heartbeat(const std::string& group, int32_t generation,
                                  const std::string& member_id,
                                  const std::optional<std::string>& instance_id) {
  Deferred out;
  Error e = Error::kNone;
  {
    std::lock_guard lk(mu_);
    Group* g = Find(group);
    if (g) {
      // Expiries due now are applied before answering (the timer runs only every 100 ms):
      // members heartbeat in step after a rebalance, so a survivor's heartbeat often arrives
      // just as a dead member's session ends, and would otherwise learn of it one interval later.
      TickGroup(*g, now_(), out);
    }
    e = HeartbeatLocked(g, generation, member_id, instance_id);
  }
  Run(out);
  return e;
}

Error GroupCoordinator::HeartbeatLocked(Group* g, int32_t generation, const std::string& member_id,
                                        const std::optional<std::string>& instance_id) {
  if (!g) return Error::kUnknownMemberId;
  if (Error e = CheckMember(*g, member_id, instance_id); e != Error::kNone) return e;
  if (generation != g->generation) return Error::kIllegalGeneration;
  Member& m = g->members.at(member_id);
  switch (g->state) {
    case State::kEmpty:
      return Error::kUnknownMemberId;
    case State::kPreparingRebalance:
      m.last_heartbeat_ms = now_();
      return Error::kRebalanceInProgress;
    case State::kCompletingRebalance:
    case State::kStable:
      m.last_heartbeat_ms = now_();
      return Error::kNone;
  }
  return Error::kNone;
}

std::vector<Error> GroupCoordinator::Leave(
    const std::string& group,
    const std::vector<std::pair<std::string, std::optional<std::string>>>& members) {
  std::vector<Error> results;
  Deferred out;
  {
    std::lock_guard lk(mu_);
    const int64_t now = now_();
    Group* g = Find(group);
    for (const auto& [member_id, instance_id] : members) {
      if (!g) {
        results.push_back(Error::kUnknownMemberId);
        continue;
      }
      std::string id = member_id;
      if (id.empty() && instance_id) {
        // An admin removing a static member by its instance id.
        auto it = g->static_members.find(*instance_id);
        if (it == g->static_members.end()) {
          results.push_back(Error::kUnknownMemberId);
          continue;
        }
        id = it->second;
      } else if (g->pending_members.erase(id)) {
        results.push_back(Error::kNone);
        MaybeCompleteJoin(*g, now, false, out);
        continue;
      }
      Error e = CheckMember(*g, id, instance_id);
      if (e == Error::kNone) RemoveMember(*g, id, Error::kUnknownMemberId, now, out);
      results.push_back(e);
    }
  }
  Run(out);
  return results;
}

Error GroupCoordinator::CheckCommit(const std::string& group, int32_t generation,
                                    const std::string& member_id,
                                    const std::optional<std::string>& instance_id) {
  std::lock_guard lk(mu_);
  Group* g = Find(group);
  if (!g) {
    // Standalone consumers (assign()) commit with generation -1 into a group nobody joined.
    return generation < 0 ? Error::kNone : Error::kUnknownMemberId;
  }
  if (generation < 0 && g->state == State::kEmpty) return Error::kNone;
  if (instance_id) {
    auto it = g->static_members.find(*instance_id);
    if (it != g->static_members.end() && it->second != member_id) return Error::kFencedInstanceId;
  }
  auto m = g->members.find(member_id);
  if (m == g->members.end()) return Error::kUnknownMemberId;
  if (generation != g->generation) return Error::kIllegalGeneration;
  // Kafka checks the member and its generation first: a stranger or a stale generation learns
  // that, not that a rebalance is under way.
  if (g->state == State::kCompletingRebalance) return Error::kRebalanceInProgress;
  m->second.last_heartbeat_ms = now_();
  return Error::kNone;
}

// ---- time ---------------------------------------------------------------------------------------

void GroupCoordinator::TickGroup(Group& g, int64_t now, Deferred& out) {
  for (auto it = g.pending_members.begin(); it != g.pending_members.end();) {
    it = it->second <= now ? g.pending_members.erase(it) : std::next(it);
  }
  // Members silent for their session timeout leave. One waiting in JoinGroup is alive.
  std::vector<std::string> expired;
  for (const auto& [id, m] : g.members) {
    if (m.awaiting_join || m.awaiting_sync) continue;
    if (now - m.last_heartbeat_ms > m.session_timeout_ms) expired.push_back(id);
  }
  for (const std::string& id : expired) RemoveMember(g, id, Error::kUnknownMemberId, now, out);
  if (g.state == State::kPreparingRebalance) {
    MaybeCompleteJoin(g, now, now >= g.join_deadline_ms, out);
  } else if ((g.state == State::kCompletingRebalance || g.state == State::kStable) &&
             !g.pending_sync.empty() && now >= g.sync_deadline_ms) {
    // Members that joined but never synced within the rebalance timeout (a leader that never
    // sends the assignment stalls everyone): they leave and the group rebalances without them.
    std::vector<std::string> stalled(g.pending_sync.begin(), g.pending_sync.end());
    for (const std::string& id : stalled) RemoveMember(g, id, Error::kUnknownMemberId, now, out);
  }
}

void GroupCoordinator::Tick() {
  Deferred out;
  {
    std::lock_guard lk(mu_);
    const int64_t now = now_();
    for (auto& [id, g] : groups_) TickGroup(g, now, out);
  }
  Run(out);
}

void GroupCoordinator::FailParked(Error error) {
  Deferred out;
  {
    std::lock_guard lk(mu_);
    for (auto& [gid, g] : groups_) {
      for (auto& [id, m] : g.members) {
        if (m.awaiting_join) {
          AnswerError(out, std::move(m.awaiting_join), error, id);
          m.awaiting_join = nullptr;
        }
        if (m.awaiting_sync) {
          out.push_back([fn = std::move(m.awaiting_sync), error] { fn({error, {}}); });
          m.awaiting_sync = nullptr;
        }
      }
    }
  }
  Run(out);
}

// ---- views and admin ----------------------------------------------------------------------------

std::optional<GroupView> GroupCoordinator::View(const std::string& group) {
  std::lock_guard lk(mu_);
  Group* g = Find(group);
  if (!g) return std::nullopt;
  GroupView v{std::string(StateName(g->state)), g->protocol_type, g->protocol, {}};
  for (const auto& [id, m] : g->members) {
    const std::string* md = MetadataFor(m, g->protocol);
    v.members.push_back({id, m.instance_id, m.client_id, m.host, md ? *md : std::string(),
                         m.assignment});
  }
  return v;
}

std::vector<std::pair<std::string, std::string>> GroupCoordinator::List() {
  std::lock_guard lk(mu_);
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [id, g] : groups_) out.emplace_back(id, g.protocol_type);
  return out;
}

Error GroupCoordinator::Forget(const std::string& group) {
  std::lock_guard lk(mu_);
  Group* g = Find(group);
  if (!g) return Error::kNone;
  if (!g->members.empty() || !g->pending_members.empty()) return Error::kNonEmptyGroup;
  groups_.erase(group);
  return Error::kNone;
}

bool GroupCoordinator::Subscribed(const std::string& group, const std::string& topic) {
  std::lock_guard lk(mu_);
  Group* g = Find(group);
  if (!g) return false;
  for (const auto& [id, m] : g->members)
    if (m.topics.count(topic)) return true;
  return false;
}

std::optional<broker::LiveGroup> GroupCoordinator::Describe(const std::string& group) {
  std::lock_guard lk(mu_);
  Group* g = Find(group);
  if (!g) return std::nullopt;
  broker::LiveGroup out{std::string(StateName(g->state)), g->protocol_type, g->protocol,
                        g->generation, {}};
  for (const auto& [id, m] : g->members) {
    broker::LiveGroupMember lm{id, m.instance_id.value_or(""), m.client_id, m.host, {}};
    if (g->protocol_type == kConsumerProtocol) {
      if (auto parts = ParseAssignment(m.assignment)) lm.assignment = std::move(*parts);
    }
    out.members.push_back(std::move(lm));
  }
  return out;
}

void GroupCoordinator::OnTopicChanged(const std::string& topic) {
  // Kafka leaves this to the leader's next metadata refresh (minutes); rebalancing at once lets
  // the subscribers of a grown or deleted topic pick up the change now.
  Deferred out;
  {
    std::lock_guard lk(mu_);
    const int64_t now = now_();
    for (auto& [id, g] : groups_) {
      if (g.state != State::kStable && g.state != State::kCompletingRebalance) continue;
      const bool subscribed = std::any_of(g.members.begin(), g.members.end(), [&](const auto& kv) {
        return kv.second.topics.count(topic) > 0;
      });
      if (subscribed) PrepareRebalance(g, now, out);
    }
  }
  Run(out);
}

}  // namespace runnel::kafka
