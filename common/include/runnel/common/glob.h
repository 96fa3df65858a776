// Shell-style globs for names: token rights (topics, groups) and dead-letter reasons.
#pragma once

#include <string_view>

namespace runnel {

// `*` matches any run of characters (also none), `?` exactly one; everything else itself. A
// pattern without wildcards matches only the same text.
bool GlobMatch(std::string_view pattern, std::string_view text);

}  // namespace runnel
