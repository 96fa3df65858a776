// backup: an online, consistent copy of a running broker's store, written by the broker itself
// (a RocksDB checkpoint) into a directory on the broker's host. Restore = start runneld with
// --data-dir pointing at that directory (or a copy of it).
#include <CLI/CLI.hpp>

#include <filesystem>

#include "ctl.h"
#include "runnel/common/units.h"

namespace runnel::ctl {
namespace {

void Backup(Context& ctx, const std::string& dir) {
  // The broker resolves paths on its host; relative ones are taken from here, which is what a
  // user on the broker's machine means.
  std::error_code ec;
  const std::string absolute = std::filesystem::absolute(dir, ec).lexically_normal().string();
  if (ec) UsageError("cannot resolve '" + dir + "': " + ec.message());
  const proto::BackupResponse r = Check(ctx.Admin().Backup(absolute), "backup");
  if (ctx.json) {
    JsonWriter w;
    w.BeginObject().Field("directory", absolute).Field("files", static_cast<int64_t>(r.files))
        .Field("bytes", static_cast<int64_t>(r.bytes)).EndObject();
    PrintJson(w);
    return;
  }
  std::printf("backup written to %s: %u files, %s\nrestore: runneld --data-dir %s\n",
              absolute.c_str(), r.files, FormatBytes(static_cast<int64_t>(r.bytes)).c_str(),
              absolute.c_str());
}

}  // namespace

void AddBackupCommands(CLI::App& app, Context& ctx) {
  auto dir = std::make_shared<std::string>();
  CLI::App* backup = app.add_subcommand(
      "backup", "Online backup: the broker writes a consistent copy of its store into DIR on its "
                "own host; start runneld --data-dir DIR to restore");
  backup->add_option("dir", *dir, "A new or empty directory on the broker's host")->required();
  backup->callback([&ctx, dir] { Backup(ctx, *dir); });
}

}  // namespace runnel::ctl
