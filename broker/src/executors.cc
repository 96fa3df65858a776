#include "executors.h"

#include <algorithm>
#include <pthread.h>

namespace runnel::broker {

void SerialQueue::Post(std::function<void()> task) {
  bool start = false;
  {
    std::lock_guard lk(mu_);
    tasks_.push_back(std::move(task));
    start = !running_;
    running_ = true;
  }
  if (start) pool_.Post([self = shared_from_this()] { self->Drain(); });
}

void SerialQueue::Drain() {
  for (;;) {
    std::function<void()> task;
    {
      std::lock_guard lk(mu_);
      if (tasks_.empty()) {
        running_ = false;
        return;
      }
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

WaitRegistry::WaitRegistry(ThreadPool& pool) : pool_(pool) {
  timer_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "runnel-poll");
    TimerLoop();
  });
}

WaitRegistry::~WaitRegistry() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  timer_.join();
}

void WaitRegistry::Wait(std::vector<std::string> keys, Clock::time_point deadline, Callback fn,
                        const std::function<bool()>& ready, bool run_inline) {
  auto w = std::make_shared<Waiter>();
  w->keys = std::move(keys);
  w->deadline = deadline;
  w->fn = std::move(fn);
  w->run_inline = run_inline;
  bool notify_timer = false;
  {
    std::lock_guard lk(mu_);
    if (released_) {
      pool_.Post([f = std::move(w->fn)] { f(true); });
      return;
    }
    for (const auto& k : w->keys) by_key_[k].push_back(w);
    notify_timer = by_deadline_.empty() || deadline < by_deadline_.begin()->first;
    w->by_deadline = by_deadline_.emplace(deadline, w);
  }
  if (notify_timer) cv_.notify_all();
  if (ready && ready()) {
    if (Callback f = Take(w)) pool_.Post([f = std::move(f)] { f(false); });
  }
}

WaitRegistry::Callback WaitRegistry::Take(const std::shared_ptr<Waiter>& w) {
  std::lock_guard lk(mu_);
  if (w->fired) return nullptr;
  w->fired = true;
  for (const auto& k : w->keys) {
    auto it = by_key_.find(k);
    if (it == by_key_.end()) continue;
    auto& v = it->second;
    v.erase(std::remove(v.begin(), v.end(), w), v.end());
    if (v.empty()) by_key_.erase(it);
  }
  by_deadline_.erase(w->by_deadline);
  return std::move(w->fn);
}

void WaitRegistry::Notify(const std::string& key) {
  std::vector<std::shared_ptr<Waiter>> woken;
  {
    std::lock_guard lk(mu_);
    auto it = by_key_.find(key);
    if (it == by_key_.end()) return;
    woken = it->second;
  }
  int inline_left = kMaxInline;
  for (const auto& w : woken) {
    Callback f = Take(w);
    if (!f) continue;
    if (w->run_inline && inline_left > 0) {
      --inline_left;
      f(false);
    } else {
      pool_.Post([f = std::move(f)] { f(false); });
    }
  }
}

void WaitRegistry::ReleaseAll() {
  std::vector<std::shared_ptr<Waiter>> all;
  {
    std::lock_guard lk(mu_);
    released_ = true;
    for (auto& [t, w] : by_deadline_) all.push_back(w);
  }
  for (const auto& w : all) {
    if (Callback f = Take(w)) pool_.Post([f = std::move(f)] { f(true); });
  }
}

void WaitRegistry::TimerLoop() {
  std::unique_lock lk(mu_);
  while (!stop_) {
    if (by_deadline_.empty()) {
      cv_.wait(lk);
      continue;
    }
    const auto next = by_deadline_.begin()->first;
    if (Clock::now() < next) {
      cv_.wait_until(lk, next);
      continue;
    }
    std::shared_ptr<Waiter> w = by_deadline_.begin()->second;
    lk.unlock();
    if (Callback f = Take(w)) pool_.Post([f = std::move(f)] { f(true); });
    lk.lock();
  }
}

}  // namespace runnel::broker
