// A fixed pool of threads running posted tasks: the broker's worker and append pools and the
// worker runtime's handler pool.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace runnel {

// A fixed pool of threads running posted tasks in FIFO order. Thread-safe. Stop() runs what is
// queued, joins the threads, and drops tasks posted afterwards.
class ThreadPool {
 public:
  // `name` names the threads (first 15 characters, as top and gdb show them).
  ThreadPool(int threads, std::string name);
  ~ThreadPool() { Stop(); }
  void Post(std::function<void()> task);
  void Stop();

 private:
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace runnel
