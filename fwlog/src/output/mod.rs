//! From records to bytes where they go: a line format (`format/`: json, text, ecs) writes
//! each record into a batch, the sinks (`sink/`: stdout, rotating file, syslog) take the batch;
//! `writer` picks the format and `destination` the sinks, as the settings say.

pub mod destination;
pub mod format;
pub mod sink;
pub mod writer;
