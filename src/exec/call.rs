//! Calling stages on an item in this process: one panic guard (a panic in a
//! stage becomes that item's failure), one loop through a chain of stages
//! (used by threads here and by worker processes), and retries.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;
use std::time::{Duration, Instant};

use crate::item::Item;
use crate::stage::Stage;

thread_local! {
    static IN_STAGE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A panic inside a stage is reported as that item's failure; the default
/// hook's message on stderr would only repeat it, so it is silenced there.
pub(super) fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_STAGE.with(|f| f.get()) {
                previous(info);
            }
        }));
    });
}

/// A stage's code panicked, with this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Panicked(pub String);

/// Run `f` (a stage's code), turning a panic into its message.
pub(super) fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, Panicked> {
    IN_STAGE.with(|s| s.set(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    IN_STAGE.with(|s| s.set(false));
    result.map_err(|payload| {
        Panicked(
            crate::panics::message(payload.as_ref())
                .unwrap_or("unknown panic")
                .to_string(),
        )
    })
}

/// How one attempt at an item went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The item failed; the run goes on.
    Item(String),
    /// The stage can't go on (its workers can't start, or keep crashing).
    Fatal(String),
    /// The run is stopping and the item was abandoned.
    Cancelled,
}

/// Where and how one attempt at an item through a chain of stages ended.
#[derive(Debug)]
pub struct Outcome {
    pub result: Result<Option<Item>, CallError>,
    /// Index (in the chain) of the stage where the item ended: the last one
    /// when it went through, else the one that failed or dropped it.
    pub at: usize,
    /// Time spent in each stage of the chain.
    pub busy: Vec<Duration>,
    /// CPU time spent in each stage of the chain (empty when not known:
    /// a worker that crashed could not say).
    pub cpu: Vec<Duration>,
    /// What crossing into a worker process cost (processes mode only).
    pub crossing: Option<Crossing>,
}

/// What taking an item through a worker process cost besides the work:
/// the bytes sent to it and back, the wait for a worker to start, and the
/// worker's size. Summed over retries (the size: the largest).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Crossing {
    pub bytes: u64,
    /// Time the item waited for a new worker to start (zero when one was
    /// ready).
    pub start: Duration,
    /// The worker's largest resident size so far, in bytes (0: unknown).
    pub peak_rss: u64,
}

impl Crossing {
    fn add(&mut self, other: &Crossing) {
        self.bytes += other.bytes;
        self.start += other.start;
        self.peak_rss = self.peak_rss.max(other.peak_rss);
    }
}

/// Wall and CPU time of each stage an item went through.
#[derive(Debug, Default)]
pub(super) struct Spent {
    pub wall: Vec<Duration>,
    pub cpu: Vec<Duration>,
}

/// How one stage of a chain ended for an item.
pub(super) enum Step {
    /// Passed on (or dropped, `None`).
    Done(Option<Box<Item>>),
    Failed(String),
    Panicked(String),
}

/// Take `item` through `stages` in order, stopping where it fails, panics or
/// is dropped; `enter(at)` is told before each stage after the first (a
/// worker tells conveyor, so a crash is blamed on the right stage) and may
/// stop the walk by returning false. Returns the stage where the item
/// ended, how, and the time spent in each stage.
pub(super) fn through_chain(
    stages: &[impl AsRef<dyn Stage>],
    mut item: Item,
    mut enter: impl FnMut(usize) -> bool,
) -> Option<(usize, Step, Spent)> {
    let mut busy = Spent {
        wall: Vec::with_capacity(stages.len()),
        cpu: Vec::with_capacity(stages.len()),
    };
    let last = stages.len().saturating_sub(1);
    for (at, stage) in stages.iter().enumerate() {
        if at > 0 && !enter(at) {
            return None;
        }
        let stage = stage.as_ref();
        let started = Instant::now();
        let cpu = crate::cputime::Meter::start();
        let result = guarded(|| stage.process(item));
        busy.wall.push(started.elapsed());
        busy.cpu.push(cpu.stop());
        let step = match result {
            Ok(Ok(Some(next))) if at < last => {
                item = next;
                continue;
            }
            Ok(Ok(out)) => Step::Done(out.map(Box::new)),
            Ok(Err(e)) => Step::Failed(e.message()),
            Err(Panicked(message)) => Step::Panicked(message),
        };
        return Some((at, step, busy));
    }
    Some((last, Step::Done(None), busy))
}

/// Run one item through consecutive stages on this thread.
pub(super) fn call_chain_in_thread(
    stages: &[std::sync::Arc<dyn Stage>],
    mut item: Item,
) -> Outcome {
    // Stages are given pixels in this process's memory. A run hands items
    // over in shared memory only between workers, so this copy is a
    // safeguard, not a path taken.
    match std::mem::take(&mut item.payload).in_process() {
        Some(payload) => item.payload = payload,
        None => {
            return Outcome {
                result: Err(CallError::Item(crate::item::PIXELS_SHORT.into())),
                at: 0,
                busy: Vec::new(),
                cpu: Vec::new(),
                crossing: None,
            };
        }
    }
    let Some((at, step, busy)) = through_chain(stages, item, |_| true) else {
        return Outcome {
            result: Err(CallError::Cancelled),
            at: 0,
            busy: Vec::new(),
            cpu: Vec::new(),
            crossing: None,
        };
    };
    let result = match step {
        Step::Done(out) => Ok(out.map(|b| *b)),
        Step::Failed(e) => Err(CallError::Item(e)),
        Step::Panicked(m) => Err(CallError::Item(format!("panicked: {m}"))),
    };
    Outcome {
        result,
        at,
        busy: busy.wall,
        cpu: busy.cpu,
        crossing: None,
    }
}

/// Run one item through `call`, retrying up to `retries` times when it fails.
pub(super) fn process_item(
    call: &mut dyn FnMut(Item) -> Outcome,
    mut item: Item,
    retries: u32,
) -> Outcome {
    item.attempt = 0;
    let mut busy: Vec<Duration> = Vec::new();
    let mut cpu: Vec<Duration> = Vec::new();
    let mut crossing: Option<Crossing> = None;
    loop {
        // A copy is kept only when a retry may need it.
        let spare = (item.attempt < retries).then(|| item.clone());
        let attempt = item.attempt;
        let mut outcome = call(item);
        // Failed attempts cost time too.
        if busy.len() < outcome.busy.len() {
            busy.resize(outcome.busy.len(), Duration::ZERO);
        }
        for (total, b) in busy.iter_mut().zip(&outcome.busy) {
            *total += *b;
        }
        if cpu.len() < outcome.cpu.len() {
            cpu.resize(outcome.cpu.len(), Duration::ZERO);
        }
        for (total, c) in cpu.iter_mut().zip(&outcome.cpu) {
            *total += *c;
        }
        if let Some(c) = &outcome.crossing {
            crossing.get_or_insert_with(Crossing::default).add(c);
        }
        match (outcome.result, spare) {
            (Err(CallError::Item(msg)), Some(mut copy)) => {
                copy.attempt += 1;
                tracing::debug!(item = %copy.rel_str(), attempt = copy.attempt + 1, "retrying after: {msg}");
                item = copy;
            }
            (Err(CallError::Item(msg)), None) if attempt > 0 => {
                outcome.result = Err(CallError::Item(format!(
                    "{msg} (after {} attempts)",
                    attempt + 1
                )));
                outcome.busy = busy;
                outcome.cpu = cpu;
                outcome.crossing = crossing;
                return outcome;
            }
            (result, _) => {
                outcome.result = result;
                outcome.busy = busy;
                outcome.cpu = cpu;
                outcome.crossing = crossing;
                return outcome;
            }
        }
    }
}
