//! Discovery strategies against real daemons and servers on loopback.
