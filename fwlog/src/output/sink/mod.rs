//! Where the lines go besides stdout (which is `std::io::stdout()` itself): each sink is a
//! `std::io::Write` that gets whole lines, one batch per `write`.

pub mod rotating_file;
pub mod syslog;
pub mod tee;
