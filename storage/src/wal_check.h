// Finds where a store's WAL is damaged, for the message that refuses to open such a store and for
// the log of a truncating recovery. RocksDB only says "checksum mismatch"; this names the file and
// the byte.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace runnel::storage {

struct WalDamage {
  std::string file;            // file name in the store directory, e.g. "000012.log"
  uint64_t offset = 0;         // byte where the first damaged record starts
  uint64_t file_size = 0;
  std::string problem;         // "checksum mismatch", "bad record length", ...
  uint64_t bytes_after = 0;    // from `offset` to the end of the WAL files (later ones included)
  uint64_t batches_after = 0;  // intact write batches (committer rounds) in those bytes
  uint64_t later_files = 0;    // WAL files after `file`
};

// Scans the WAL files (*.log) of the RocksDB directory `store_dir` in order and returns the first
// damage that is not a torn tail (the newest file ending inside a record, as a crash leaves it).
// Reads only RocksDB's WAL framing (32 KiB blocks of checksummed fragments), never the batches.
// nullopt when every WAL is intact or cannot be read.
std::optional<WalDamage> FindWalDamage(const std::string& store_dir);

// "store WAL 000012.log is corrupt at byte 1234 (checksum mismatch)".
std::string DescribeWalDamage(const WalDamage& damage);

}  // namespace runnel::storage
