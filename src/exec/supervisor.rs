//! The parent side of processes mode: one supervisor per worker slot starts a
//! child (conveyor's own binary with a hidden argument), hands it one item at
//! a time, and turns every way a child can die (panic, abort, signal, hang
//! past `timeout`, `memory_limit`) into that one item's failure, then starts
//! a fresh child for the next item.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ipc_channel::{IpcError, TryRecvError};

use super::call::Crossing;
use super::protocol::{FromWorker, Keep, Reason, ToWorker, WireItem};
pub use super::spawn::ChainProcesses;
use super::spawn::{self, Worker, describe_death};
use super::{CallError, Outcome};
use crate::item::{Item, Payload};

/// After Ctrl-C, how long an item in a worker may still take.
const INTERRUPT_GRACE: Duration = Duration::from_millis(1500);
/// After the grace, how long a worker that is placing its item's files may
/// take to finish the item and answer before it is killed.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// How often a wait for a worker looks at the interrupt flag.
const POLL: Duration = Duration::from_millis(100);

/// The executable that serves as a worker: this very program.
pub fn worker_exe() -> PathBuf {
    let proc_exe = PathBuf::from("/proc/self/exe");
    if proc_exe.exists() {
        proc_exe
    } else {
        std::env::current_exe().unwrap_or(proc_exe)
    }
}

/// One worker slot of a chain in processes mode.
pub struct Slot<'a> {
    stage: &'a ChainProcesses,
    /// PID of the current worker (0: none yet), for naming trace tracks.
    pid: Arc<AtomicU32>,
    interrupt: &'a AtomicBool,
    worker: Option<Worker>,
    interrupted_at: Option<Instant>,
    /// When the current worker was asked to stop.
    asked_at: Option<Instant>,
}

impl<'a> Slot<'a> {
    pub fn new(stage: &'a ChainProcesses, interrupt: &'a AtomicBool) -> Slot<'a> {
        Slot {
            stage,
            pid: Arc::new(AtomicU32::new(0)),
            interrupt,
            worker: None,
            interrupted_at: None,
            asked_at: None,
        }
    }

    /// Where the current worker's PID can be read.
    pub fn pid_handle(&self) -> Arc<AtomicU32> {
        Arc::clone(&self.pid)
    }

    /// The item's worker died or was killed: count it, and give up on the
    /// stage when workers keep dying without finishing anything.
    fn crashed(&self, at: usize, reason: String) -> CallError {
        let n = self.stage.crashes_in_a_row.fetch_add(1, Ordering::SeqCst) + 1;
        tracing::info!(stage = %self.stage.names.get(at).map_or("?", String::as_str), "worker lost: {reason}");
        if n >= self.stage.crash_limit {
            CallError::Fatal(format!(
                "{reason}; workers of stage `{}` crashed {n} times in a row without finishing an item, so the stage stopped",
                self.stage.names.get(at).map_or("?", String::as_str)
            ))
        } else {
            CallError::Item(reason)
        }
    }

    fn finished(&mut self) {
        self.stage.crashes_in_a_row.store(0, Ordering::SeqCst);
        let recycle = match (&mut self.worker, self.stage.max_items_per_worker) {
            (Some(w), Some(max)) => {
                w.items += 1;
                w.items >= max
            }
            _ => false,
        };
        if recycle && let Some(w) = self.worker.take() {
            w.shut_down();
        }
    }

    /// Take one item through the chain in a worker, starting one if needed.
    pub fn call(&mut self, item: Item) -> Outcome {
        let mut clock = Clock::new(self.stage.names.len());
        let result = self.call_inner(item, &mut clock);
        clock.stop();
        Outcome {
            result,
            at: clock.at,
            busy: clock.busy,
            cpu: std::mem::take(&mut clock.cpu),
            crossing: Some(clock.crossing),
        }
    }

    fn call_inner(&mut self, item: Item, clock: &mut Clock) -> Result<Option<Item>, CallError> {
        if self.worker.is_none() {
            let asked = Instant::now();
            let w = spawn::spawn(self.stage).map_err(|e| {
                CallError::Fatal(format!(
                    "stage `{}` cannot start its workers: {e}",
                    self.stage.names[0]
                ))
            })?;
            self.pid.store(w.child.id(), Ordering::Relaxed);
            self.worker = Some(w);
            self.stage.started.fetch_add(1, Ordering::Relaxed);
            // Starting a worker is the stage's cost too, but not the item's
            // time limit's: it is counted apart.
            clock.started = Instant::now();
            clock.crossing.start = clock.started - asked;
        }
        // Pixels in another worker's lent memory stay lent until this
        // worker has answered (it has read them by then, copied out or in
        // place): this copy of the image is dropped only when the call
        // returns.
        let _hold = match &item.payload {
            Payload::Shared(shared) => Some(shared.clone()),
            _ => None,
        };
        let sent = self.worker.as_mut().and_then(|w| {
            let wire = WireItem::new(item, &mut w.to_slot, None);
            clock.crossing.bytes += wire.size();
            let returned =
                std::mem::take(&mut *w.returns.lock().unwrap_or_else(|e| e.into_inner()));
            w.tx.as_ref().map(|tx| {
                tx.send(ToWorker::Item {
                    item: Box::new(wire),
                    returned,
                })
            })
        });
        if !matches!(sent, Some(Ok(()))) {
            return Err(self.lost_worker(clock.at, false));
        }
        let mut deadline = self.deadline(0, clock.started);
        loop {
            let mut wait = POLL;
            if let Some((d, _)) = deadline {
                wait = wait.min(d.saturating_duration_since(Instant::now()));
            }
            let Some(worker) = self.worker.as_mut() else {
                return Err(CallError::Fatal("no worker".into()));
            };
            match worker.rx.try_recv_timeout(wait) {
                Ok(FromWorker::Enter(k)) if k > clock.at && k < clock.busy.len() => {
                    clock.enter(k);
                    deadline = self.deadline(k, clock.started);
                }
                Ok(answer) => return self.answered(answer, clock),
                Err(TryRecvError::Empty) => self.waited(deadline, clock.at)?,
                Err(TryRecvError::IpcError(IpcError::Disconnected)) => {
                    return Err(self.lost_worker(clock.at, true));
                }
                Err(TryRecvError::IpcError(_)) => return Err(self.lost_worker(clock.at, false)),
            }
        }
    }

    /// When stage `k` of the chain, entered at `from`, runs out of time.
    fn deadline(&self, k: usize, from: Instant) -> Option<(Instant, Duration)> {
        self.stage
            .timeouts
            .get(k)
            .copied()
            .flatten()
            .map(|t| (from + t, t))
    }

    /// The worker's answer about the item.
    fn answered(
        &mut self,
        answer: FromWorker,
        clock: &mut Clock,
    ) -> Result<Option<Item>, CallError> {
        match answer {
            FromWorker::Done {
                at: k,
                result,
                cpu,
                peak_rss,
            } if k < clock.busy.len() => {
                if k != clock.at {
                    clock.enter(k);
                }
                clock.cpu = cpu;
                clock.crossing.peak_rss = peak_rss;
                if let Ok(Some(w)) = &result {
                    clock.crossing.bytes += w.size();
                }
                // The pixels are copied out of the worker's slot before
                // `finished` may retire the worker (and its slot).
                let out = match result {
                    Ok(Some(w)) => match self.worker.as_mut() {
                        Some(worker) => w
                            .into_item(&mut worker.from_slot, Keep::Lease(&worker.returns))
                            .map(Some)
                            .map_err(|e| CallError::Item(e.to_string())),
                        None => Err(CallError::Fatal("no worker".into())),
                    },
                    Ok(None) => Ok(None),
                    Err(Reason(msg)) => Err(CallError::Item(msg)),
                };
                self.finished();
                out
            }
            FromWorker::Panicked { at: k, message } => {
                if k < clock.busy.len() {
                    clock.at = k;
                }
                if let Some(w) = self.worker.take() {
                    let _ = w.reap();
                }
                Err(self.crashed(clock.at, format!("worker panicked: {message}")))
            }
            _ => {
                if let Some(w) = self.worker.take() {
                    let _ = w.kill();
                }
                Err(self.crashed(clock.at, "worker answered out of turn".into()))
            }
        }
    }

    /// Nothing yet from the worker: end it if the run is stopping past its
    /// grace, or if the item is past its time limit.
    fn waited(
        &mut self,
        deadline: Option<(Instant, Duration)>,
        at: usize,
    ) -> Result<(), CallError> {
        if self.interrupt.load(Ordering::Relaxed) {
            let since = *self.interrupted_at.get_or_insert_with(Instant::now);
            if since.elapsed() >= INTERRUPT_GRACE {
                // Killing the worker now could leave a file it has just
                // placed but not yet told us of: ask it instead, and kill
                // only one that neither answers nor ends.
                match self.asked_at {
                    None => {
                        if let Some(w) = &self.worker {
                            w.ask_to_stop();
                        }
                        self.asked_at = Some(Instant::now());
                    }
                    Some(asked) if asked.elapsed() >= STOP_WAIT => {
                        if let Some(w) = self.worker.take() {
                            let _ = w.kill();
                        }
                        return Err(CallError::Cancelled);
                    }
                    Some(_) => {}
                }
            }
        }
        if let Some((d, t)) = deadline
            && Instant::now() >= d
        {
            if let Some(w) = self.worker.take() {
                let _ = w.kill();
            }
            return Err(self.crashed(at, format!("timed out after {}", format_duration(t))));
        }
        Ok(())
    }

    /// The worker stopped answering: find out how it ended.
    fn lost_worker(&mut self, at: usize, ended: bool) -> CallError {
        let Some(w) = self.worker.take() else {
            return CallError::Fatal("no worker".into());
        };
        let (status, said) = if ended { w.reap() } else { w.kill() };
        if self.asked_at.is_some() {
            // It ended because it was asked to, with nothing of the item
            // placed.
            return CallError::Cancelled;
        }
        self.crashed(at, describe_death(status, &said, self.stage.memory_limit))
    }
}

/// Where an item is in its chain, and the time it spent in each stage.
struct Clock {
    at: usize,
    started: Instant,
    busy: Vec<Duration>,
    /// CPU time per stage, as the worker measured it.
    cpu: Vec<Duration>,
    crossing: Crossing,
}

impl Clock {
    fn new(stages: usize) -> Clock {
        Clock {
            at: 0,
            started: Instant::now(),
            busy: vec![Duration::ZERO; stages],
            cpu: Vec::new(),
            crossing: Crossing::default(),
        }
    }

    /// The item moved on to stage `k`.
    fn enter(&mut self, k: usize) {
        let now = Instant::now();
        self.busy[self.at] += now - self.started;
        self.at = k;
        self.started = now;
    }

    /// The item's time in its last stage.
    fn stop(&mut self) {
        if let Some(b) = self.busy.get_mut(self.at) {
            *b += self.started.elapsed();
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.worker.take() {
            if self.interrupt.load(Ordering::Relaxed) {
                let _ = w.kill();
            } else {
                w.shut_down();
            }
        }
    }
}

fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}
