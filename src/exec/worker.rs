//! The child side of processes mode: a worker connects back to conveyor,
//! becomes one stage, and processes one item at a time until its input
//! channel closes.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};

use ipc_channel::ipc::{self, IpcSender};

use super::protocol::{Bootstrap, FromWorker, ToWorker, WORKER_ARG, WireItem};
use crate::stages::{Built, Registry};

static IN_WORKER: AtomicBool = AtomicBool::new(false);

/// True inside a worker process. Fault-injection stages use it to refuse
/// harming the main process.
pub fn in_worker_process() -> bool {
    IN_WORKER.load(Ordering::Relaxed)
}

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
    IN_WORKER.store(true, Ordering::Relaxed);
    let Ok(bootstrap) = IpcSender::<Bootstrap>::connect(server.to_string()) else {
        return 3;
    };
    let (Ok((to_tx, to_rx)), Ok((from_tx, from_rx))) = (ipc::channel::<ToWorker>(), ipc::channel::<FromWorker>())
    else {
        return 3;
    };
    if bootstrap.send((to_tx, from_rx)).is_err() {
        return 3;
    }
    drop(bootstrap);

    let stage = match to_rx.recv() {
        Ok(ToWorker::Init { kind, options }) => {
            let built = match (registry.get(&kind), toml::from_str::<toml::Table>(&options)) {
                (Some(spec), Ok(table)) => (spec.build)(&table),
                (None, _) => Err(format!("this program has no stage kind `{kind}`")),
                (_, Err(e)) => Err(format!("bad options: {e}")),
            };
            match built {
                Ok(Built::Stage(stage)) => stage,
                Ok(Built::Source(_)) => {
                    let _ = from_tx.send(FromWorker::InitFailed(format!("`{kind}` is a source")));
                    return 2;
                }
                Err(e) => {
                    let _ = from_tx.send(FromWorker::InitFailed(e));
                    return 2;
                }
            }
        }
        _ => return 2,
    };
    if from_tx.send(FromWorker::Ready).is_err() {
        return 0;
    }
    super::install_panic_hook();
    // The answer to each item is sent before the next is read, so conveyor
    // always knows which item a crash belongs to.
    while let Ok(ToWorker::Item(wire)) = to_rx.recv() {
        let item = match crate::item::Item::try_from(wire) {
            Ok(item) => item,
            Err(e) => {
                if from_tx.send(FromWorker::Done(Err(e))).is_err() {
                    return 0;
                }
                continue;
            }
        };
        super::IN_STAGE.with(|f| f.set(true));
        let result = catch_unwind(AssertUnwindSafe(|| stage.process(item)));
        super::IN_STAGE.with(|f| f.set(false));
        let answer = match result {
            Ok(Ok(out)) => FromWorker::Done(Ok(out.map(WireItem::from))),
            Ok(Err(e)) => FromWorker::Done(Err(e.0)),
            Err(payload) => {
                // State after a panic can't be trusted: report, then leave.
                let _ = from_tx.send(FromWorker::Panicked(super::panic_message(payload.as_ref())));
                return 101;
            }
        };
        if from_tx.send(answer).is_err() {
            return 0;
        }
    }
    0
}
