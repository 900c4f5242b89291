//! Where the lines go besides stdout (which is `std::io::stdout()` itself): each sink is a
//! `std::io::Write` that gets whole lines, one batch per `write`; the IPFIX exporter gets each
//! ended flow's record instead of its line.

pub mod ipfix;
pub mod rotating_file;
pub mod syslog;
pub mod tee;
