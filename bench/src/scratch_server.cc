#include "scratch_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>

#include "runnel/broker/launch.h"

namespace runnel::bench {

Status ScratchServer::MakeDir(const std::string& scratch, const std::string& name) {
  Stop();
  static std::atomic<int> runs{0};
  dir_ = scratch + "/" + name + "-" + std::to_string(::getpid()) + "-" + std::to_string(runs++);
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
  std::filesystem::create_directories(dir_, ec);
  if (ec) return Status::IOError("cannot create " + dir_ + ": " + ec.message());
  return Status::OK();
}

void ScratchServer::Spawn(const std::vector<std::string>& args, const std::string& log) {
  pid_ = broker::SpawnProcess(args, Path(log));
}

void ScratchServer::Stop() {
  if (pid_ > 0) broker::StopProcess(pid_, SIGTERM);
  pid_ = -1;
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    dir_.clear();
  }
}

Result<uint16_t> FreeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return Status::IOError("socket failed");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    return Status::IOError("cannot find a free loopback port");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

}  // namespace runnel::bench
