//! The child side of processes mode: a worker connects back to conveyor,
//! becomes one stage, and processes one item at a time until its input
//! channel closes.

use ipc_channel::ipc::{self, IpcSender};

use std::sync::Arc;

use super::call::Step;
use super::protocol::{
    Bootstrap, FromWorker, Keep, Lender, Mapped, Reason, Slot, StageInit, ToWorker, WORKER_ARG,
    WireItem,
};
use crate::item::Payload;
use crate::stage::{Built, Stage};
use crate::stages::Registry;

/// If this process was started as a worker, serve as one and exit; else
/// return. A program that embeds conveyor with its own command line calls
/// this first thing in `main`, with the same registry it runs pipelines with.
pub fn run_if_worker(registry: &Registry) {
    let mut args = std::env::args();
    let _exe = args.next();
    if args.next().as_deref() == Some(WORKER_ARG) {
        let code = match args.next() {
            Some(server) => serve(&server, registry),
            None => 2,
        };
        std::process::exit(code);
    }
}

/// Connect to `server`, then process items until conveyor hangs up.
/// Returns the exit code.
fn serve(server: &str, registry: &Registry) -> i32 {
    crate::exec::heap::keep_freed_memory();
    let Ok(bootstrap) = IpcSender::<Bootstrap>::connect(server.to_string()) else {
        return 3;
    };
    let (Ok((to_tx, to_rx)), Ok((from_tx, from_rx))) =
        (ipc::channel::<ToWorker>(), ipc::channel::<FromWorker>())
    else {
        return 3;
    };
    if bootstrap.send((to_tx, from_rx)).is_err() {
        return 3;
    }
    drop(bootstrap);

    let (stages, hand_over) = match to_rx.recv() {
        Ok(ToWorker::Init { stages, hand_over }) => match build_chain(&stages, registry) {
            Ok(stages) => (stages, hand_over),
            Err(e) => {
                let _ = from_tx.send(FromWorker::InitFailed(e.to_string()));
                return 2;
            }
        },
        _ => return 2,
    };
    if from_tx.send(FromWorker::Ready).is_err() {
        return 0;
    }
    super::call::install_panic_hook();
    stop::install();
    // The answer to each item is sent before the next is read, so conveyor
    // always knows which item (and which stage) a crash belongs to.
    // Shared memory for large pixels, from conveyor and to it.
    let (mut in_slot, mut out_slot) = (Slot::default(), Slot::default());
    // Memory lent to conveyor for the pixels this worker hands over.
    let mut lender = hand_over.then(Lender::default);
    // Pixels another worker handed over are read where they lie by a
    // first stage that can (a resize reads a photo once, to make a much
    // smaller one), instead of being copied into this process first.
    // Either way, the pieces of lent memory stay mapped for the next
    // image lent in them.
    let mapped = Mapped::default();
    let shared = match stages.first() {
        Some(first) if first.reads_shared() => Keep::InPlace(&mapped),
        _ => Keep::Copy(&mapped),
    };
    while let Ok(ToWorker::Item {
        item: wire,
        returned,
    }) = to_rx.recv()
    {
        if let Some(lender) = lender.as_mut() {
            lender.returned(&returned);
        }
        read_late(&wire);
        let answer = match wire.into_item(&mut in_slot, shared) {
            Ok(item) => run_chain(&stages, item, &from_tx, &mut out_slot, lender.as_mut()),
            Err(e) => Some(FromWorker::Done {
                at: 0,
                result: Err(Reason(e.to_string())),
                cpu: Vec::new(),
                peak_rss: crate::cputime::peak_rss_self(),
            }),
        };
        hold_after_placing();
        match answer {
            Some(msg) => {
                let panicked = matches!(msg, FromWorker::Panicked { .. });
                if from_tx.send(msg).is_err() {
                    return 0;
                }
                if panicked {
                    // State after a panic can't be trusted: leave.
                    return 101;
                }
                crate::output::commit::reset();
                if stop::asked() {
                    return STOPPED;
                }
            }
            None => return 0,
        }
    }
    0
}

/// Debug builds only: with `CONVEYOR_DEBUG_HOLD_MS` set, a worker that has
/// placed a file waits that long before answering, so a test can interrupt
/// a run at the moment a file exists that conveyor has not yet been told of.
fn hold_after_placing() {
    #[cfg(debug_assertions)]
    if crate::output::commit::committing()
        && let Some(ms) = std::env::var("CONVEYOR_DEBUG_HOLD_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Debug builds only: with `CONVEYOR_DEBUG_READ_LATE_MS` set, a worker
/// given pixels in another worker's lent memory waits that long before it
/// reads them (copies them out, or gives them to a first stage that reads
/// them in place), so a test can show that the memory is not reused while
/// a reader is this slow.
fn read_late(wire: &WireItem) {
    #[cfg(debug_assertions)]
    use super::protocol::{WirePayload, WirePixels};
    #[cfg(debug_assertions)]
    if matches!(
        wire.payload,
        WirePayload::Image {
            pixels: WirePixels::Shared { .. },
            ..
        }
    ) && let Some(ms) = std::env::var("CONVEYOR_DEBUG_READ_LATE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    #[cfg(not(debug_assertions))]
    let _ = wire;
}

/// The exit code of a worker that ended because conveyor asked it to stop.
pub(super) const STOPPED: i32 = 75;

/// Conveyor asks a worker to stop (after Ctrl-C, when the grace is over)
/// with `STOP_SIGNAL`. A worker that has placed none of the item's files
/// ends at once; one that has finishes the item and answers first, so
/// every file on disk is one conveyor counts and journals.
pub(super) mod stop {
    use std::sync::atomic::{AtomicBool, Ordering};

    pub(in crate::exec) const STOP_SIGNAL: libc::c_int = libc::SIGUSR1;

    static ASKED: AtomicBool = AtomicBool::new(false);

    extern "C" fn on_stop(_: libc::c_int) {
        if crate::output::commit::committing() {
            ASKED.store(true, Ordering::SeqCst);
        } else {
            // SAFETY: _exit is async-signal-safe; nothing of the item was
            // placed, and temp files are swept by the next run.
            unsafe { libc::_exit(super::STOPPED) };
        }
    }

    pub(super) fn install() {
        // SAFETY: the handler makes only async-signal-safe calls (atomic
        // loads and stores, _exit); the struct is zeroed then filled.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_stop as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(STOP_SIGNAL, &action, std::ptr::null_mut());
        }
    }

    /// Asked to stop while the item was being committed.
    pub(super) fn asked() -> bool {
        ASKED.load(Ordering::SeqCst)
    }
}

/// Why a worker could not build its chain of stages.
#[derive(Debug)]
enum InitError {
    Guard(std::io::Error),
    UnknownKind(String),
    BadOptions(String),
    Build(crate::stage::KindError),
    IsSource(String),
}

impl std::fmt::Display for InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InitError::Guard(e) => write!(f, "cannot read the run's output guard: {e}"),
            InitError::UnknownKind(k) => write!(f, "this program has no stage kind `{k}`"),
            InitError::BadOptions(e) => write!(f, "bad options: {e}"),
            InitError::Build(e) => e.fmt(f),
            InitError::IsSource(k) => write!(f, "`{k}` is a source"),
        }
    }
}

fn build_chain(inits: &[StageInit], registry: &Registry) -> Result<Vec<Arc<dyn Stage>>, InitError> {
    if let Some(first) = inits.first() {
        crate::cores::set_share(first.threads);
    }
    // One guard for the chain, joined to conveyor's through the run folder.
    let guard = match inits.first().and_then(|i| i.run_dir.as_ref()) {
        Some(dir) => crate::output::Guard::join(dir).map_err(InitError::Guard)?,
        None => crate::output::Guard::unchecked(),
    };
    inits
        .iter()
        .map(|init| {
            let spec = registry
                .get(&init.kind)
                .ok_or_else(|| InitError::UnknownKind(init.kind.clone()))?;
            let table: toml::Table =
                toml::from_str(&init.options).map_err(|e| InitError::BadOptions(e.to_string()))?;
            let ctx = crate::stage::BuildContext {
                stage: init.name.clone(),
                timeout: init.timeout,
                output: guard.clone(),
                in_worker: true,
            };
            match (spec.build)(&table, &ctx).map_err(InitError::Build)? {
                Built::Stage(stage) => Ok(stage),
                Built::Source(_) => Err(InitError::IsSource(init.kind.clone())),
            }
        })
        .collect()
}

/// Take one item through the chain. `None`: conveyor has gone away.
fn run_chain(
    stages: &[Arc<dyn Stage>],
    item: crate::item::Item,
    tx: &IpcSender<FromWorker>,
    slot: &mut Slot,
    lender: Option<&mut Lender>,
) -> Option<FromWorker> {
    let enter = |at| tx.send(FromWorker::Enter(at)).is_ok();
    let (at, step, spent) = super::call::through_chain(stages, item, enter)?;
    // Pixels still in another worker's lent memory would go back to
    // conveyor without their lease, and the memory be reused while later
    // readers need them: no stage hands them on (`resize` never does),
    // and should one, they are copied into this worker's own memory here.
    let step = match step {
        Step::Done(Some(mut out)) if matches!(out.payload, Payload::Shared(_)) => {
            match std::mem::take(&mut out.payload).in_process() {
                Some(payload) => {
                    out.payload = payload;
                    Step::Done(Some(out))
                }
                None => Step::Failed(crate::item::PIXELS_SHORT.into()),
            }
        }
        other => other,
    };
    Some(match step {
        Step::Done(out) => FromWorker::Done {
            at,
            result: Ok(out.map(|i| Box::new(WireItem::new(*i, slot, lender)))),
            cpu: spent.cpu,
            peak_rss: crate::cputime::peak_rss_self(),
        },
        Step::Failed(e) => FromWorker::Done {
            at,
            result: Err(Reason(e)),
            cpu: spent.cpu,
            peak_rss: crate::cputime::peak_rss_self(),
        },
        Step::Panicked(message) => FromWorker::Panicked { at, message },
    })
}
