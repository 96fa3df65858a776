// Execution helpers of the broker core: a fixed thread pool, a serial queue on top of it (the
// per-session produce order), and the registry where long-polls park until a key is notified or
// their deadline passes.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "runnel/common/thread_pool.h"

namespace runnel::broker {

// Runs its tasks one at a time, in post order, on a pool. Thread-safe. Always held by a
// shared_ptr: a scheduled drain keeps the queue alive.
class SerialQueue : public std::enable_shared_from_this<SerialQueue> {
 public:
  explicit SerialQueue(ThreadPool& pool) : pool_(pool) {}
  void Post(std::function<void()> task);

 private:
  void Drain();

  ThreadPool& pool_;
  std::mutex mu_;
  std::deque<std::function<void()>> tasks_;
  bool running_ = false;
};

// Parked long-polls. Each waiter runs its callback exactly once: when one of its keys is
// notified (timed_out = false), when its deadline passes or at ReleaseAll (true). Callbacks run
// on the pool, except that Notify runs up to kMaxInline waiters parked with `run_inline` on the
// notifying thread itself, saving a thread hop on the path from commit to consumer.
class WaitRegistry {
 public:
  using Clock = std::chrono::steady_clock;
  using Callback = std::function<void(bool timed_out)>;

  explicit WaitRegistry(ThreadPool& pool);
  ~WaitRegistry();

  static constexpr int kMaxInline = 2;

  // Parks `fn`. `ready` is checked after parking, closing the race with a notification that
  // came between the caller's last look and the park: when it returns true the waiter fires now.
  // `run_inline` lets Notify run `fn` on the notifying thread; only for quick, non-blocking work.
  void Wait(std::vector<std::string> keys, Clock::time_point deadline, Callback fn,
            const std::function<bool()>& ready, bool run_inline = false);
  void Notify(const std::string& key);
  // Fires every waiter (timed_out = true); later Waits fire at once.
  void ReleaseAll();

 private:
  struct Waiter {
    std::vector<std::string> keys;
    Clock::time_point deadline;
    Callback fn;
    bool run_inline = false;
    bool fired = false;
    std::multimap<Clock::time_point, std::shared_ptr<Waiter>>::iterator by_deadline;
  };
  // Removes `w` from the indexes; returns its callback, or nullptr if it already fired.
  Callback Take(const std::shared_ptr<Waiter>& w);
  void TimerLoop();

  ThreadPool& pool_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool released_ = false;
  bool stop_ = false;
  std::unordered_map<std::string, std::vector<std::shared_ptr<Waiter>>> by_key_;
  std::multimap<Clock::time_point, std::shared_ptr<Waiter>> by_deadline_;
  std::thread timer_;
};

}  // namespace runnel::broker
