//! Lines on their way to sinks that may fail: each sink has a spool that keeps what it could
//! not take yet (up to [`MAX_PENDING`] bytes) and retries with a growing back-off, so a full
//! disk or a stuck reader never stops the collector, and with it the session and its rules.
//! The lines of a batch that do not fit are dropped and their events counted; a `lost` line
//! (`where: output`) goes where they are missing, before the next lines that fit.

use std::{
    collections::VecDeque,
    io::Write as _,
    time::{Duration, Instant},
};

use super::sink::LineSink;

/// Bytes a spool keeps for a failing sink before it drops new batches (a few thousand lines).
pub const MAX_PENDING: usize = 4 << 20;
/// The first retry after a failure; each failed retry doubles the wait, up to [`LAST_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(20);
const LAST_RETRY: Duration = Duration::from_secs(1);

/// The lines the collector formatted since the last write, and which of them are events.
#[derive(Debug, Default)]
pub struct Batch {
    pub bytes: Vec<u8>,
    /// Where each line ends in `bytes`, and whether it is an event (verdict or flow) rather
    /// than a count line (lost, flows_evicted, stats).
    ends: Vec<(usize, bool)>,
}

impl Batch {
    pub fn with_capacity(bytes: usize) -> Self {
        Batch {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::new(),
        }
    }

    /// Adds the line `write` formats, an event's.
    pub fn event(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        self.line(true, write);
    }

    /// Adds the line `write` formats, a count line.
    pub fn count_line(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        self.line(false, write);
    }

    fn line(&mut self, event: bool, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.bytes.len();
        write(&mut self.bytes);
        if self.bytes.len() > start {
            self.ends.push((self.bytes.len(), event));
        }
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

/// One sink and what it has not taken yet.
pub struct Spool {
    sink: Box<dyn LineSink>,
    pending: Vec<u8>,
    /// Where each pending line ends, counted from the first byte this spool ever held.
    lines: VecDeque<(u64, bool)>,
    /// How many bytes went out before `pending[0]`.
    base: u64,
    /// Events dropped since the last `lost` line was queued.
    unreported: u64,
    /// Every event dropped.
    lost: u64,
    retry_at: Option<Instant>,
    delay: Duration,
    /// Said on stderr that the sink fails; said again when it works.
    failing: bool,
}

impl Spool {
    pub fn new(sink: Box<dyn LineSink>) -> Self {
        Spool {
            sink,
            pending: Vec::new(),
            lines: VecDeque::new(),
            base: 0,
            unreported: 0,
            lost: 0,
            retry_at: None,
            delay: FIRST_RETRY,
            failing: false,
        }
    }

    /// Events this sink never got.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    pub fn closed(&self) -> bool {
        self.sink.closed()
    }

    /// Nothing waits and no loss is still to be said.
    pub fn all_written(&self) -> bool {
        self.pending.is_empty() && self.unreported == 0
    }

    /// Hands `batch` to the sink, straight from the batch when nothing waits and no back-off
    /// holds (the usual case: no copy, and a batch of any size goes out whole); queues what
    /// the sink did not take (first a `lost` line made by `lost_line` for the events dropped
    /// so far, if any) as far as it fits, whole lines, and counts the events of the lines that
    /// do not fit. Then writes if a write is due.
    pub fn push(&mut self, batch: &Batch, now: Instant, lost_line: impl FnOnce(&mut Vec<u8>, u64)) {
        let mut taken = 0;
        if self.pending.is_empty() && self.unreported == 0 && self.may_write(now, false) {
            let written = self.sink.write_lines(&batch.bytes);
            taken = written.bytes.min(batch.bytes.len());
            self.base += taken as u64;
            self.after_write(written.bytes, written.error, now);
            if taken == batch.bytes.len() {
                return;
            }
        }
        let ends = &batch.ends[batch.ends.partition_point(|&(end, _)| end <= taken)..];
        let mut room = MAX_PENDING.saturating_sub(self.pending.len());
        if self.unreported > 0 {
            let mut line = Vec::new();
            lost_line(&mut line, self.unreported);
            if line.len() <= room {
                self.append(&line, [(line.len(), false)]);
                self.unreported = 0;
                room -= line.len();
            } else {
                // Nothing goes in before the line that says what is missing.
                room = 0;
            }
        }
        // A line the sink took the start of is kept whole, whatever the room: never half a line.
        let started = usize::from(taken > 0 && !ends.is_empty() && !ends_a_line(batch, taken));
        let fitting = (started + ends[started..].partition_point(|&(end, _)| end - taken <= room))
            .min(ends.len());
        let kept = fitting.checked_sub(1).map_or(taken, |last| ends[last].0);
        self.append(
            &batch.bytes[taken..kept],
            ends[..fitting]
                .iter()
                .map(|&(end, event)| (end - taken, event)),
        );
        let dropped = ends[fitting..].iter().filter(|(_, event)| *event).count() as u64;
        self.unreported += dropped;
        self.lost += dropped;
        self.write(now, false);
    }

    fn append(&mut self, bytes: &[u8], ends: impl IntoIterator<Item = (usize, bool)>) {
        let start = self.base + self.pending.len() as u64;
        self.pending.extend_from_slice(bytes);
        self.lines.extend(
            ends.into_iter()
                .map(|(end, event)| (start + end as u64, event)),
        );
    }

    /// Whether a write may be tried now: the sink is open and no back-off holds (`force`
    /// ignores the back-off).
    fn may_write(&self, now: Instant, force: bool) -> bool {
        !self.sink.closed() && (force || self.retry_at.is_none_or(|at| now >= at))
    }

    /// Hands what is pending to the sink, unless the back-off says wait (`force` ignores it).
    pub fn write(&mut self, now: Instant, force: bool) {
        if self.pending.is_empty() || !self.may_write(now, force) {
            return;
        }
        let written = self.sink.write_lines(&self.pending);
        self.pending.drain(..written.bytes.min(self.pending.len()));
        self.base += written.bytes as u64;
        while self.lines.front().is_some_and(|&(end, _)| end <= self.base) {
            self.lines.pop_front();
        }
        self.after_write(written.bytes, written.error, now);
    }

    /// Notes a write's outcome: says when the sink starts or stops failing, and sets the
    /// back-off after a failure (short again when the failed write still took bytes).
    fn after_write(&mut self, bytes: usize, error: Option<std::io::Error>, now: Instant) {
        match error {
            None => {
                if self.failing {
                    say(&format!("fwlog: writing to {} again", self.sink.name()));
                }
                self.failing = false;
                self.retry_at = None;
                self.delay = FIRST_RETRY;
            }
            Some(error) => {
                if !self.failing && !self.sink.closed() {
                    say(&format!(
                        "fwlog: cannot write to {} ({error}); the rules stay, the lines wait \
                         (up to {} MiB) and are retried, and events beyond that are counted \
                         as lost",
                        self.sink.name(),
                        MAX_PENDING >> 20
                    ));
                }
                self.failing = true;
                self.delay = if bytes > 0 {
                    FIRST_RETRY
                } else {
                    (self.delay * 2).min(LAST_RETRY)
                };
                self.retry_at = Some(now + self.delay);
            }
        }
    }

    /// At exit: one last write, then counts the events still pending as lost.
    pub fn finish(&mut self, now: Instant) {
        self.write(now, true);
        let left = self.lines.iter().filter(|(_, event)| *event).count() as u64;
        self.lost += left;
        self.pending.clear();
        self.lines.clear();
    }
}

/// Whether `at` bytes into `batch` is the end of one of its lines (or its start).
fn ends_a_line(batch: &Batch, at: usize) -> bool {
    at == 0
        || batch
            .ends
            .binary_search_by_key(&at, |&(end, _)| end)
            .is_ok()
}

/// A message on stderr that may itself fail (stderr on a full disk): never a panic.
pub fn say(message: &str) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, io, rc::Rc};

    use super::*;
    use crate::output::sink::Written;

    /// Bytes of each test line.
    const LINE: usize = 14;

    /// A sink that takes whole lines up to `room` bytes, then fails.
    #[derive(Clone, Default)]
    struct Flaky {
        taken: Rc<RefCell<Vec<u8>>>,
        room: Rc<RefCell<usize>>,
    }

    impl LineSink for Flaky {
        fn write_lines(&mut self, lines: &[u8]) -> Written {
            let mut room = self.room.borrow_mut();
            let whole = crate::output::sink::whole_lines(&lines[..lines.len().min(*room)]);
            self.taken.borrow_mut().extend_from_slice(&lines[..whole]);
            *room -= whole;
            Written {
                bytes: whole,
                error: (whole < lines.len()).then(|| io::Error::from_raw_os_error(libc::ENOSPC)),
            }
        }

        fn name(&self) -> String {
            "a test sink".into()
        }
    }

    fn batch(first: usize, events: usize) -> Batch {
        let mut batch = Batch::default();
        for n in first..first + events {
            batch.event(|out| out.extend_from_slice(format!("event {n:07}\n").as_bytes()));
        }
        batch
    }

    #[test]
    fn lines_wait_while_the_sink_fails_and_go_out_in_order_when_it_works() {
        let sink = Flaky::default();
        let mut spool = Spool::new(Box::new(sink.clone()));
        let start = Instant::now();
        spool.push(&batch(0, 3), start, |_, _| unreachable!());
        *sink.room.borrow_mut() = 5 * LINE;
        spool.write(start + LAST_RETRY, false);
        spool.push(&batch(3, 2), start + LAST_RETRY, |_, _| unreachable!());
        let text = String::from_utf8(sink.taken.borrow().clone()).expect("UTF-8");
        assert_eq!(text.lines().count(), 5, "{text}");
        assert!(text.starts_with("event 0000000\n") && text.ends_with("event 0000004\n"));
        assert_eq!(spool.lost(), 0);
    }

    #[test]
    fn what_does_not_fit_is_counted_and_reported_where_it_is_missing() {
        let sink = Flaky::default();
        let mut spool = Spool::new(Box::new(sink.clone()));
        let now = Instant::now();
        // A full spool, then two batches that do not fit.
        let fill = MAX_PENDING / LINE;
        spool.push(&batch(0, fill), now, |_, _| unreachable!());
        spool.push(&batch(fill, 4), now, |_, _| unreachable!());
        // Still full: the lost line for the first 4 does not fit either.
        spool.push(&batch(fill + 4, 3), now, |out, n| {
            out.extend_from_slice(format!("lost {n}\n").as_bytes())
        });
        assert_eq!(spool.lost(), 7);
        *sink.room.borrow_mut() = usize::MAX;
        spool.write(now + LAST_RETRY, false);
        spool.push(&batch(fill + 7, 1), now + LAST_RETRY, |out, n| {
            out.extend_from_slice(format!("lost {n}\n").as_bytes())
        });
        let text = String::from_utf8(sink.taken.borrow().clone()).expect("UTF-8");
        let tail: Vec<&str> = text.lines().rev().take(3).collect();
        assert_eq!(
            tail,
            [
                format!("event {:07}", fill + 7),
                "lost 7".to_string(),
                format!("event {:07}", fill - 1)
            ]
        );
        assert_eq!(spool.lost(), 7);
    }

    #[test]
    fn a_working_sink_takes_a_batch_larger_than_the_spool_whole() {
        let sink = Flaky::default();
        *sink.room.borrow_mut() = usize::MAX;
        let mut spool = Spool::new(Box::new(sink.clone()));
        let events = 2 * MAX_PENDING / LINE;
        spool.push(&batch(0, events), Instant::now(), |_, _| unreachable!());
        assert_eq!(sink.taken.borrow().len(), events * LINE);
        assert_eq!(spool.lost(), 0);
        assert!(spool.all_written());
    }

    #[test]
    fn what_a_sink_leaves_of_a_batch_waits_for_the_retry() {
        let sink = Flaky::default();
        *sink.room.borrow_mut() = 2 * LINE;
        let mut spool = Spool::new(Box::new(sink.clone()));
        let now = Instant::now();
        spool.push(&batch(0, 5), now, |_, _| unreachable!());
        assert_eq!(sink.taken.borrow().len(), 2 * LINE);
        assert_eq!((spool.lines.len(), spool.pending.len()), (3, 3 * LINE));
        *sink.room.borrow_mut() = usize::MAX;
        spool.write(now + LAST_RETRY, false);
        let text = String::from_utf8(sink.taken.borrow().clone()).expect("UTF-8");
        let expected: String = (0..5).map(|n| format!("event {n:07}\n")).collect();
        assert_eq!(text, expected);
        assert_eq!(spool.lost(), 0);
    }

    #[test]
    fn a_batch_keeps_the_lines_that_fit() {
        let sink = Flaky::default();
        let mut spool = Spool::new(Box::new(sink.clone()));
        let now = Instant::now();
        let fill = MAX_PENDING / LINE;
        spool.push(&batch(0, fill - 1), now, |_, _| unreachable!());
        spool.push(&batch(fill - 1, 3), now, |_, _| unreachable!());
        assert_eq!(spool.lost(), 2);
        assert_eq!(spool.lines.len(), fill);
    }

    #[test]
    fn the_back_off_grows_and_the_exit_counts_what_is_left() {
        let sink = Flaky::default();
        let mut spool = Spool::new(Box::new(sink.clone()));
        let now = Instant::now();
        spool.push(&batch(0, 2), now, |_, _| unreachable!());
        for _ in 0..10 {
            let due = spool.retry_at.expect("a retry is due");
            spool.write(due, false);
        }
        assert_eq!(spool.delay, LAST_RETRY);
        // Not due yet: nothing is tried.
        *sink.room.borrow_mut() = usize::MAX;
        spool.write(spool.retry_at.expect("due") - FIRST_RETRY, false);
        assert!(sink.taken.borrow().is_empty());
        *sink.room.borrow_mut() = LINE;
        spool.finish(now);
        assert_eq!(sink.taken.borrow().as_slice(), b"event 0000000\n");
        assert_eq!(spool.lost(), 1);
    }
}
