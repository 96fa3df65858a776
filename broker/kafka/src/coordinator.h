// The Kafka group coordinator: the classic group protocol (JoinGroup, SyncGroup, Heartbeat,
// LeaveGroup) as Kafka's GroupCoordinator defines it, with this broker coordinating every group.
//
// Membership lives here, in memory, and survives nothing across a restart (a member of a lost
// generation gets UNKNOWN_MEMBER_ID and rejoins). Offsets do not live here: the handlers commit
// them durably in the store's stream-group offsets (groups.cc), after CheckCommit said the
// member may.
//
// States (Kafka's): Empty -> PreparingRebalance (members rejoin until all have, or the rebalance
// timeout) -> CompletingRebalance (the leader's SyncGroup brings the assignment) -> Stable. A
// member leaving, expiring or changing its subscription sends the group back to
// PreparingRebalance. Static members (group.instance.id) keep their place across restarts of
// their process: rejoining under a new member id fences the old one, without a rebalance when the
// group is Stable and their protocols are unchanged.
//
// Thread-safe. Completions (parked JoinGroup and SyncGroup answers) run on the thread that
// completes them, after the coordinator's lock is released: a request thread or the thread
// calling Tick.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "errors.h"
#include "runnel/broker/broker.h"

namespace runnel::kafka {

struct CoordinatorOptions {
  // How long the first rebalance of an empty group waits for more members (Kafka's
  // group.initial.rebalance.delay.ms), extended by each join up to the rebalance timeout.
  int32_t initial_rebalance_delay_ms = 3000;
  int32_t min_session_timeout_ms = 1000;       // group.min.session.timeout.ms (Kafka: 6000)
  int32_t max_session_timeout_ms = 1'800'000;  // group.max.session.timeout.ms
  size_t max_members = 1000;                   // group.max.size
  size_t max_metadata_bytes = 1 << 20;         // one member's protocols together
  size_t max_assignment_bytes = 1 << 20;       // one member's assignment
  size_t max_id_bytes = 255;                   // member, instance and client ids
};

struct ProtocolEntry {
  std::string name;
  std::string metadata;
};

struct JoinArgs {
  std::string group_id;
  std::string member_id;
  std::optional<std::string> instance_id;
  std::string client_id;
  std::string client_host;
  int32_t session_timeout_ms = 0;
  int32_t rebalance_timeout_ms = 0;
  std::string protocol_type;
  std::vector<ProtocolEntry> protocols;
  bool require_known_member_id = false;  // JoinGroup v4+: a new member first gets its id
};

struct JoinedMember {
  std::string member_id;
  std::optional<std::string> instance_id;
  std::string metadata;
};

struct JoinOutcome {
  Error error = Error::kNone;
  int32_t generation = -1;
  std::string protocol_name;
  std::string leader;
  std::string member_id;
  std::vector<JoinedMember> members;  // for the leader only
};

struct SyncOutcome {
  Error error = Error::kNone;
  std::string assignment;
};

// One group as DescribeGroups shows it.
struct GroupView {
  std::string state;
  std::string protocol_type;
  std::string protocol;
  struct Member {
    std::string member_id;
    std::optional<std::string> instance_id;
    std::string client_id;
    std::string client_host;
    std::string metadata;  // of the chosen protocol
    std::string assignment;
  };
  std::vector<Member> members;
};

class GroupCoordinator final : public broker::LiveGroups {
 public:
  using NowFn = std::function<int64_t()>;  // milliseconds, monotonic
  // Creates the store's record of a Kafka group (durable) unless it exists; InvalidArgument when
  // the name belongs to a native or queue group.
  using EnsureFn = std::function<Status(const std::string& group)>;

  GroupCoordinator(CoordinatorOptions options, NowFn now, EnsureFn ensure);

  using JoinDone = std::function<void(JoinOutcome)>;
  using SyncDone = std::function<void(SyncOutcome)>;
  // `done` runs exactly once: at once, or when the rebalance completes (or fails).
  void Join(JoinArgs args, JoinDone done);
  void Sync(const std::string& group, int32_t generation, const std::string& member_id,
            const std::optional<std::string>& instance_id,
            std::vector<std::pair<std::string, std::string>> assignments, SyncDone done);
  Error Heartbeat(const std::string& group, int32_t generation, const std::string& member_id,
                  const std::optional<std::string>& instance_id);
  // One result per member. A member given by instance id only (empty member id) is looked up.
  std::vector<Error> Leave(const std::string& group,
                           const std::vector<std::pair<std::string, std::optional<std::string>>>& members);
  // Whether this member may commit offsets now (Kafka's rules: a simple commit, generation < 0,
  // only into an empty group). A commit counts as a heartbeat.
  Error CheckCommit(const std::string& group, int32_t generation, const std::string& member_id,
                    const std::optional<std::string>& instance_id);

  std::optional<GroupView> View(const std::string& group);
  // Every group held in memory with its protocol type.
  std::vector<std::pair<std::string, std::string>> List();
  // NON_EMPTY_GROUP while it has members; otherwise forgets it (the caller deletes the offsets).
  Error Forget(const std::string& group);
  // Whether a member of the group subscribes to `topic` (OffsetDelete refuses those).
  bool Subscribed(const std::string& group, const std::string& topic);

  // Expires silent members and pending joins, and completes rebalances whose time is up. Called
  // every ~100 ms by the front-end's timer thread (and by tests with their own clock).
  void Tick();
  // Answers every parked call with `error` (broker shutdown).
  void FailParked(Error error);

  // broker::LiveGroups
  std::optional<broker::LiveGroup> Describe(const std::string& group) override;
  void OnTopicChanged(const std::string& topic) override;

 private:
  enum class State : uint8_t { kEmpty, kPreparingRebalance, kCompletingRebalance, kStable };
  static std::string_view StateName(State s);

  struct Member {
    std::string id;
    std::optional<std::string> instance_id;
    std::string client_id;
    std::string host;
    int32_t session_timeout_ms = 0;
    int32_t rebalance_timeout_ms = 0;
    std::vector<ProtocolEntry> protocols;
    std::set<std::string> topics;  // parsed from a "consumer" subscription
    std::string assignment;
    JoinDone awaiting_join;
    SyncDone awaiting_sync;
    int64_t last_heartbeat_ms = 0;
  };
  struct Group {
    std::string id;
    State state = State::kEmpty;
    int32_t generation = 0;
    std::string protocol_type;
    std::string protocol;
    std::string leader;
    std::map<std::string, Member> members;
    std::map<std::string, std::string> static_members;  // instance id -> member id
    std::map<std::string, int64_t> pending_members;     // issued ids not yet joined -> deadline
    std::set<std::string> pending_sync;                 // got a join answer, not yet synced
    int64_t join_deadline_ms = 0;
    bool initial_join = false;  // the first rebalance of an empty group: wait out the delay
    int64_t initial_join_limit_ms = 0;
    int64_t sync_deadline_ms = 0;
  };
  // Work to run once the lock is released.
  using Deferred = std::vector<std::function<void()>>;

  Group* Find(const std::string& id);
  std::string NewMemberId(const std::string& client_id);
  Error CheckMember(const Group& g, const std::string& member_id,
                    const std::optional<std::string>& instance_id) const;
  bool SupportsProtocols(const Group& g, const std::string& type,
                         const std::vector<ProtocolEntry>& protocols) const;
  std::string SelectProtocol(const Group& g) const;
  const std::string* MetadataFor(const Member& m, const std::string& protocol) const;
  int32_t RebalanceTimeout(const Group& g) const;

  void AddMember(Group& g, JoinArgs& args, const std::string& member_id, JoinDone done,
                 int64_t now, Deferred& out);
  // Takes the join's timeouts, client, protocols (and the topics they subscribe) into `m`.
  void SetMember(Group& g, Member& m, JoinArgs& args, int64_t now);
  // A known member's join: answered now (nothing changed) or parked for a rebalance.
  void UpdateMember(Group& g, Member& m, JoinArgs& args, JoinDone done, int64_t now, Deferred& out);
  void StaticRejoin(Group& g, JoinArgs& args, const std::string& old_id, JoinDone done, int64_t now,
                    Deferred& out);
  void PrepareRebalance(Group& g, int64_t now, Deferred& out);
  void MaybeCompleteJoin(Group& g, int64_t now, bool deadline_passed, Deferred& out);
  void CompleteJoin(Group& g, int64_t now, Deferred& out);
  void RemoveMember(Group& g, const std::string& member_id, Error why, int64_t now, Deferred& out);
  // Answers every member waiting in SyncGroup with `error` (the rebalance they synced for ended).
  // Their sessions restart: a member parked in SyncGroup cannot heartbeat (its connection waits).
  void FailAwaitingSync(Group& g, Error error, int64_t now, Deferred& out);
  JoinOutcome CurrentJoinOutcome(const Group& g, const Member& m, bool with_members) const;
  void TickGroup(Group& g, int64_t now, Deferred& out);
  Error HeartbeatLocked(Group* g, int32_t generation, const std::string& member_id,
                        const std::optional<std::string>& instance_id);
  static void Run(Deferred& out);

  const CoordinatorOptions options_;
  const NowFn now_;
  const EnsureFn ensure_;
  std::mutex mu_;
  std::map<std::string, Group> groups_;
  uint64_t id_seq_ = 0;
};

// The topics of a ConsumerProtocolSubscription (member metadata of protocol type "consumer"), and
// the partitions of a ConsumerProtocolAssignment; nullopt when the bytes do not parse.
std::optional<std::vector<std::string>> ParseSubscriptionTopics(std::string_view metadata);
std::optional<std::vector<storage::TopicPartition>> ParseAssignment(std::string_view assignment);

}  // namespace runnel::kafka
