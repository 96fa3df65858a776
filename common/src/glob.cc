#include "runnel/common/glob.h"

namespace runnel {

bool GlobMatch(std::string_view pattern, std::string_view text) {
  // Greedy with one backtrack point: the last `*` seen and where in `text` it resumes.
  size_t p = 0, t = 0;
  size_t star = std::string_view::npos, resume = 0;
  while (t < text.size()) {
    // `*` first: it is always a wildcard, even where the text holds a `*` too.
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = t;
    } else if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

}  // namespace runnel
