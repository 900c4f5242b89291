//! From records to bytes where they go: a line format (`format/`: json, text, ecs) writes
//! each record into a batch, the sinks (`sink/`: stdout, rotating file, syslog) take the batch
//! through a spool each (`spool`: kept and retried while a sink fails); `writer` picks the
//! format and `destination` the sinks, as the settings say.

pub mod destination;
pub mod format;
pub mod sink;
pub mod spool;
pub mod writer;
