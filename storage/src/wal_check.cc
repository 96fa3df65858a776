// FindWalDamage: a read-only check of RocksDB's WAL framing.
//
// The framing is LevelDB's log format as RocksDB 7.8 writes it: the file is a sequence of 32 KiB
// blocks; each holds fragments with a header of a masked CRC-32C (4 bytes, little-endian), a
// payload length (2 bytes, little-endian) and a type (1 byte): full, first, middle or last piece
// of a record (one record = one WriteBatch = one committer round). "Recyclable" types 5-8 add the
// file's log number (4 bytes) to the header, and the CRC covers it. Fewer than a header's bytes
// left in a block are zero padding; the next fragment starts at the next block.
#include "wal_check.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <utility>
#include <vector>

#include "runnel/common/crc32c.h"

namespace runnel::storage {
namespace {

constexpr uint64_t kBlockSize = 32 * 1024;
constexpr uint64_t kHeaderSize = 7;
constexpr uint64_t kRecyclableHeaderSize = 11;
constexpr uint32_t kMaskDelta = 0xa282ead8u;

enum FragmentType : uint8_t {
  kZeroType = 0,  // preallocated space, never written
  kFullType = 1,
  kFirstType = 2,
  kMiddleType = 3,
  kLastType = 4,
  kRecyclableFullType = 5,
  kRecyclableLastType = 8,
  kSetCompressionType = 9,  // a file-level marker RocksDB may write first
};

uint32_t Unmask(uint32_t masked) {
  const uint32_t rot = masked - kMaskDelta;
  return (rot >> 17) | (rot << 15);
}

uint32_t Fixed32LE(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return uint32_t{u[0]} | (uint32_t{u[1]} << 8) | (uint32_t{u[2]} << 16) | (uint32_t{u[3]} << 24);
}

// A read-only mapping of a whole file; empty when it cannot be read.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    struct stat st {};
    if (::fstat(fd, &st) == 0 && st.st_size > 0) {
      void* p = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
      if (p != MAP_FAILED) {
        addr_ = p;
        size_ = static_cast<size_t>(st.st_size);
      }
    }
    ::close(fd);
  }
  ~MappedFile() {
    if (addr_) ::munmap(addr_, size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  std::string_view data() const { return {static_cast<const char*>(addr_), size_}; }

 private:
  void* addr_ = nullptr;
  size_t size_ = 0;
};

enum class Step {
  kFragment,   // a good fragment; *pos is past it
  kNextBlock,  // padding or preallocated zeros; *pos is at the next block
  kEnd,        // clean end of the file
  kTorn,       // the file ends inside a fragment: a write cut short by a crash
  kBad,        // damage at the fragment that started at *pos; *resume is where to go on
};

// Reads the fragment at *pos of `data` (the WAL with number `log_number`).
Step NextFragment(std::string_view data, uint32_t log_number, uint64_t* pos, uint8_t* type,
                  std::string* problem, uint64_t* resume) {
  const uint64_t size = data.size();
  if (*pos >= size) return Step::kEnd;
  const uint64_t block_end = (*pos / kBlockSize + 1) * kBlockSize;
  const uint64_t left = block_end - *pos;
  if (left < kHeaderSize) {
    *pos = block_end;
    return Step::kNextBlock;
  }
  if (size - *pos < kHeaderSize) return Step::kTorn;
  const char* h = data.data() + *pos;
  *type = static_cast<uint8_t>(h[6]);
  const uint64_t length =
      uint64_t{static_cast<unsigned char>(h[4])} | (uint64_t{static_cast<unsigned char>(h[5])} << 8);
  if (*type == kZeroType && length == 0) {
    *pos = block_end;
    return Step::kNextBlock;
  }
  const bool recyclable = *type >= kRecyclableFullType && *type <= kRecyclableLastType;
  const uint64_t header = recyclable ? kRecyclableHeaderSize : kHeaderSize;
  // A fragment never crosses a block. Past the end of the file within the last block is a
  // write cut short; anything else is a length that cannot be.
  if (*pos + header + length > size && size < block_end) return Step::kTorn;
  *resume = block_end;  // after a bad length or type, only the next block is a sure start
  if (header + length > left) {
    *problem = "bad record length";
    return Step::kBad;
  }
  if (*type > kSetCompressionType) {
    *problem = "unknown record type " + std::to_string(*type);
    return Step::kBad;
  }
  uint32_t crc = crc32c::Extend(0, h + 6, 1);
  if (recyclable) {
    // A recycled file still holds an older log's fragments past the new end.
    if (Fixed32LE(h + 7) != log_number) return Step::kEnd;
    crc = crc32c::Extend(crc, h + 7, 4);
  }
  crc = crc32c::Extend(crc, h + header, length);
  if (crc != Unmask(Fixed32LE(h))) {
    // Most likely a damaged payload with a good length: the next fragment follows it (if the
    // length was the damaged part, the next "fragment" fails its checksum too).
    *resume = *pos + header + length;
    *problem = "checksum mismatch";
    return Step::kBad;
  }
  *pos += header + length;
  return Step::kFragment;
}

bool IsFull(uint8_t t) { return t == kFullType || t == kRecyclableFullType; }
bool IsFirst(uint8_t t) { return t == kFirstType || t == kFirstType + 4; }
bool IsMiddle(uint8_t t) { return t == kMiddleType || t == kMiddleType + 4; }
bool IsLast(uint8_t t) { return t == kLastType || t == kRecyclableLastType; }

struct FileDamage {
  uint64_t offset = 0;  // start of the damaged record
  uint64_t resume = 0;  // where intact fragments may follow
  std::string problem;
};

// The first damage of one file.
std::optional<FileDamage> ScanFile(std::string_view data, uint32_t log_number) {
  uint64_t pos = 0, record_start = 0;
  bool in_record = false;
  for (;;) {
    const uint64_t start = pos;
    uint8_t type = 0;
    std::string problem;
    uint64_t resume = 0;
    switch (NextFragment(data, log_number, &pos, &type, &problem, &resume)) {
      case Step::kEnd:
      case Step::kTorn:
        return std::nullopt;  // a record still open here is a torn tail too
      case Step::kNextBlock:
        continue;
      case Step::kBad:
        return FileDamage{in_record ? record_start : start, resume, problem};
      case Step::kFragment:
        break;
    }
    if (IsFull(type) || IsFirst(type)) {
      if (in_record) return FileDamage{record_start, start, "record without its end"};
      in_record = IsFirst(type);
      record_start = start;
    } else if (IsMiddle(type) || IsLast(type)) {
      if (!in_record) return FileDamage{start, pos, "record without its start"};
      in_record = !IsLast(type);
    }
  }
}

// Whole records with good checksums from `from` on (a lower bound: past damage that hid where
// the next fragment starts, it resumes at the next block).
uint64_t CountBatches(std::string_view data, uint32_t log_number, uint64_t from) {
  uint64_t pos = from, count = 0;
  bool in_record = false;
  for (;;) {
    uint8_t type = 0;
    std::string problem;
    uint64_t resume = 0;
    const Step step = NextFragment(data, log_number, &pos, &type, &problem, &resume);
    if (step == Step::kEnd || step == Step::kTorn) return count;
    if (step == Step::kBad) {
      pos = resume;
      in_record = false;
      continue;
    }
    if (step != Step::kFragment) continue;
    if (IsFull(type)) {
      ++count;
      in_record = false;
    } else if (IsFirst(type)) {
      in_record = true;
    } else if (IsLast(type) && in_record) {
      ++count;
      in_record = false;
    }
  }
}

}  // namespace

std::optional<WalDamage> FindWalDamage(const std::string& store_dir) {
  std::vector<std::pair<uint64_t, std::string>> wals;  // (number, name)
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(store_dir, ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= 4 || name.compare(name.size() - 4, 4, ".log") != 0) continue;
    const std::string digits = name.substr(0, name.size() - 4);
    if (digits.find_first_not_of("0123456789") != std::string::npos) continue;
    wals.emplace_back(std::stoull(digits), name);
  }
  std::sort(wals.begin(), wals.end());
  std::optional<WalDamage> damage;
  for (const auto& [number, name] : wals) {
    MappedFile file(store_dir + "/" + name);
    const std::string_view data = file.data();
    const auto log_number = static_cast<uint32_t>(number);
    if (damage) {  // a later file: all of it goes with the damage
      damage->bytes_after += data.size();
      damage->batches_after += CountBatches(data, log_number, 0);
      ++damage->later_files;
      continue;
    }
    auto bad = ScanFile(data, log_number);
    if (!bad) continue;
    WalDamage d;
    d.file = name;
    d.offset = bad->offset;
    d.file_size = data.size();
    d.problem = bad->problem;
    d.bytes_after = data.size() - d.offset;
    d.batches_after = CountBatches(data, log_number, bad->resume);
    damage = std::move(d);
  }
  return damage;
}

std::string DescribeWalDamage(const WalDamage& d) {
  return "store WAL " + d.file + " is corrupt at byte " + std::to_string(d.offset) + " of " +
         std::to_string(d.file_size) + " (" + d.problem + ")";
}

}  // namespace runnel::storage
