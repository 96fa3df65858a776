// Test fixtures shared by every suite: a self-deleting temporary directory.
#pragma once

#include <string>

namespace runnel::testing {

// Creates a fresh directory under $TMPDIR (or /tmp) and removes it with its contents on
// destruction. Not copyable.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name.
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace runnel::testing
