// A stopped store's RocksDB opened directly, with every column family, for tests that damage or
// rewrite what is on disk. Closed when the object goes. Users link RocksDB.
#pragma once

#include <doctest/doctest.h>
#include <rocksdb/db.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace runnel::testing {

class RawStore {
 public:
  explicit RawStore(const std::string& data_dir) {
    const std::string path = data_dir + "/store";
    std::vector<std::string> names;
    REQUIRE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), path, &names).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const auto& n : names) cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
    rocksdb::DB* raw = nullptr;
    REQUIRE(rocksdb::DB::Open(rocksdb::DBOptions(), path, cfs, &families_, &raw).ok());
    db_.reset(raw);
  }
  ~RawStore() {
    for (auto* h : families_) (void)db_->DestroyColumnFamilyHandle(h);
    (void)db_->Close();
  }
  RawStore(const RawStore&) = delete;
  RawStore& operator=(const RawStore&) = delete;

  rocksdb::DB& db() { return *db_; }
  const std::vector<rocksdb::ColumnFamilyHandle*>& families() const { return families_; }
  // The column family called `name`; REQUIREd to exist.
  rocksdb::ColumnFamilyHandle* Family(std::string_view name) const {
    for (auto* h : families_)
      if (h->GetName() == name) return h;
    FAIL("no column family " << name);
    return nullptr;
  }

 private:
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> families_;
};

}  // namespace runnel::testing
