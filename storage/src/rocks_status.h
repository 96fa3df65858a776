// The one place storage converts rocksdb::Status into runnel::Status.
#pragma once

#include <rocksdb/status.h>

#include <string_view>

#include "runnel/common/status.h"

namespace runnel::storage {

// Maps a RocksDB status to Runnel's codes, prefixing the message with `context`.
Status FromRocks(const rocksdb::Status& s, std::string_view context);

}  // namespace runnel::storage
