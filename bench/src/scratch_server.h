// A server process the harness starts for one run (runneld, redis-server), with its scratch
// directory. Stop() ends the process and removes the directory.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "runnel/common/result.h"

namespace runnel::bench {

class ScratchServer {
 public:
  ~ScratchServer() { Stop(); }
  // Makes a fresh directory <scratch>/<name>-<pid>-<n>, unique in this process.
  Status MakeDir(const std::string& scratch, const std::string& name);
  const std::string& dir() const { return dir_; }
  std::string Path(const std::string& file) const { return dir_ + "/" + file; }
  // Starts `args` with its output in <dir>/<log>.
  void Spawn(const std::vector<std::string>& args, const std::string& log);
  pid_t pid() const { return pid_; }
  void Stop();  // SIGTERM and wait; removes the directory

 private:
  std::string dir_;
  pid_t pid_ = -1;
};

// A loopback port that was free a moment ago (for servers that cannot pick their own).
Result<uint16_t> FreeLoopbackPort();

}  // namespace runnel::bench
