// The one way Runnel includes Asio (Boost 1.74 needs <utility> first for its coroutine support).
#pragma once

#include <utility>

#include <boost/asio.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace runnel::broker {
namespace asio = boost::asio;
using asio::ip::tcp;
}  // namespace runnel::broker
