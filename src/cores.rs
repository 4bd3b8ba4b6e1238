//! The run's cores: the `--jobs` budget as permits that items hold while a
//! worker processes them, and that per-pixel work inside one item (resize,
//! blur, sharpen, colour conversion) may borrow while nobody else wants
//! them. A lone large image then uses every core, and a full batch never
//! runs more busy threads than jobs.
//!
//! The executor owns a [`Cores`] and tells each worker thread about it
//! ([`enter`]); stages only call [`split`], which knows nothing of the
//! executor. A worker process has no permits to borrow from: it is given
//! its share of the cores ([`set_share`]) and always splits that far.

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Below this many pixels an image is not split: the work is a few
/// milliseconds, less than waking helpers is worth.
pub const MIN_PIXELS_TO_SPLIT: u64 = 1 << 20;

/// Pixels per part at least, so small images use fewer parts than cores.
const PIXELS_PER_PART: u64 = 1 << 19;

/// How long a permit must have had no taker before it may be borrowed. In
/// a full batch a worker takes a freed permit back within microseconds
/// (it only passes its item on first); lending it out then would make that
/// worker wait for the loan, and split work runs less efficiently than
/// whole items side by side. Permits idle this long are truly idle: the
/// batch's tail, or one large image alone.
const IDLE_BEFORE_LENDING: Duration = Duration::from_millis(5);

/// The permits of one run.
pub struct Cores {
    total: usize,
    state: Mutex<Free>,
    freed: Condvar,
}

#[derive(Default)]
struct Free {
    /// Permits nobody holds.
    free: usize,
    /// Workers waiting for a permit: they come before any borrower.
    waiting: usize,
    /// Since when a permit has been free with no worker taking it (loans
    /// given back don't count as newly free).
    idle_since: Option<Instant>,
}

impl Cores {
    /// `total` permits, all free (at least one).
    pub fn new(total: usize) -> Arc<Cores> {
        single_threaded_default();
        let total = total.max(1);
        Arc::new(Cores {
            total,
            state: Mutex::new(Free {
                free: total,
                waiting: 0,
                idle_since: Some(Instant::now()),
            }),
            freed: Condvar::new(),
        })
    }

    /// How many permits there are in all.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Wait for a permit and hold it until [`Cores::release`].
    pub fn acquire(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.waiting += 1;
        while s.free == 0 {
            s = self.freed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        s.waiting -= 1;
        s.free -= 1;
        if s.free == 0 {
            s.idle_since = None;
        }
    }

    /// A worker gives back its permit.
    pub fn release(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.free = (s.free + 1).min(self.total);
        if s.idle_since.is_none() {
            s.idle_since = Some(Instant::now());
        }
        drop(s);
        self.freed.notify_all();
    }

    /// A borrower gives back `n` permits.
    fn give_back(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.free = (s.free + n).min(self.total);
        drop(s);
        self.freed.notify_all();
    }

    /// Take up to `max` permits that no worker is waiting for and that
    /// have been idle a while, without waiting. Returns how many were taken.
    pub fn borrow(&self, max: usize) -> usize {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let settled = s
            .idle_since
            .is_some_and(|t| t.elapsed() >= IDLE_BEFORE_LENDING);
        if !settled {
            return 0;
        }
        let idle = s.free.saturating_sub(s.waiting);
        let n = idle.min(max);
        s.free -= n;
        n
    }

    /// Permits nobody holds.
    #[cfg(test)]
    fn free(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).free
    }
}

thread_local! {
    /// The permits this thread's items may borrow from (a worker thread of
    /// a run).
    static CURRENT: RefCell<Option<Arc<Cores>>> = const { RefCell::new(None) };
    /// Threads this thread may always use (a worker process's share).
    static SHARE: Cell<usize> = const { Cell::new(1) };
}

/// Items processed on this thread may borrow idle permits from `cores`.
pub fn enter(cores: Arc<Cores>) {
    single_threaded_default();
    CURRENT.with(|c| *c.borrow_mut() = Some(cores));
}

/// This thread (a worker process's) may always split work `threads` ways:
/// its share of the cores, not every core, since its siblings share them.
pub fn set_share(threads: usize) {
    single_threaded_default();
    SHARE.with(|s| s.set(threads.max(1)));
}

/// Run per-pixel `work` on an image of `pixels` pixels, split over as
/// many threads as this thread may use now (its share, plus permits it
/// borrows). `work` gets the number of parts to cut the image into; with
/// more than one it runs inside a rayon pool of that many threads, so
/// rayon-aware code (`par_chunks_mut`, fast_image_resize) spreads over
/// them. Borrowed permits are given back when `work` returns.
pub fn split<R: Send>(pixels: u64, work: impl FnOnce(usize) -> R + Send) -> R {
    run_split(pixels, false, work)
}

/// [`split`] for libraries that use rayon whatever the count (the AVIF
/// encoder): even with one part, `work` runs in a pool, this thread's own,
/// so it never queues on the process-wide pool that all worker threads
/// share.
pub fn split_in_pool<R: Send>(pixels: u64, work: impl FnOnce(usize) -> R + Send) -> R {
    run_split(pixels, true, work)
}

fn run_split<R: Send>(pixels: u64, always_pool: bool, work: impl FnOnce(usize) -> R + Send) -> R {
    // Already inside a split (a pool thread): use that pool as it is.
    if rayon::current_thread_index().is_some() {
        return work(rayon::current_num_threads());
    }
    let most = usize::try_from(pixels / PIXELS_PER_PART)
        .unwrap_or(usize::MAX)
        .max(1);
    let (threads, borrowed, cores) = if pixels < MIN_PIXELS_TO_SPLIT || most == 1 {
        (1, 0, None)
    } else {
        let share = SHARE.with(Cell::get).min(most);
        let cores = CURRENT.with(|c| c.borrow().clone());
        let borrowed = match &cores {
            Some(c) if share < most => c.borrow(most.min(c.total()).saturating_sub(share)),
            _ => 0,
        };
        (share + borrowed, borrowed, cores)
    };
    // Given back even if `work` panics: the panic guard above catches it
    // and the run goes on.
    let _loan = Loan(cores.as_deref(), borrowed);
    let chosen = if threads > 1 || always_pool {
        pool(threads)
    } else {
        None
    };
    match chosen {
        Some(p) => {
            // The pool's threads do only this thread's work: their CPU
            // time is the stage's.
            let before: Duration = p.broadcast(|_| crate::cputime::thread_now()).iter().sum();
            let out = p.install(|| work(threads));
            let after: Duration = p.broadcast(|_| crate::cputime::thread_now()).iter().sum();
            crate::cputime::add_elsewhere(after.saturating_sub(before));
            out
        }
        None => work(1),
    }
}

struct Loan<'a>(Option<&'a Cores>, usize);

impl Drop for Loan<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.0 {
            c.give_back(self.1);
        }
    }
}

/// Pools not in use, kept for the next split that wants their width; at
/// most this many (the rest end their threads).
const IDLE_POOLS: usize = 8;

/// A rayon pool of exactly `threads` threads, lent to one split at a time:
/// code inside it sees `rayon::current_num_threads() == threads`. Never
/// shared by two splits at once: in a shared pool, a thread waiting inside
/// one item's work (a `join`) may pick up the other item's whole job, and
/// any thread-local state the first holds (a resizer's buffers in a
/// `RefCell`) is then entered twice. Pools are kept when given back, so
/// their threads are started once, and their number stays near the number
/// of splits running at once.
fn pool(threads: usize) -> Option<Lent> {
    let kept = {
        let mut idle = idle_pools().lock().unwrap_or_else(|e| e.into_inner());
        idle.iter()
            .position(|p| p.current_num_threads() == threads)
            .map(|i| idle.swap_remove(i))
    };
    let pool = match kept {
        Some(p) => p,
        None => rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(move |i| format!("pixels-{threads}/{i}"))
            .build()
            .ok()?,
    };
    Some(Lent(Some(pool)))
}

fn idle_pools() -> &'static Mutex<Vec<rayon::ThreadPool>> {
    static IDLE: OnceLock<Mutex<Vec<rayon::ThreadPool>>> = OnceLock::new();
    IDLE.get_or_init(Mutex::default)
}

/// A pool lent to one split, given back when dropped.
struct Lent(Option<rayon::ThreadPool>);

impl std::ops::Deref for Lent {
    type Target = rayon::ThreadPool;
    fn deref(&self) -> &rayon::ThreadPool {
        // Some until dropped.
        self.0.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let mut idle = idle_pools().lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < IDLE_POOLS {
                idle.push(p);
            }
        }
    }
}

/// rayon-aware libraries (fast_image_resize, the AVIF encoder) split work
/// by `rayon::current_num_threads()`, which outside any pool is the global
/// pool's size. It is made one thread, so they split only inside [`split`].
fn single_threaded_default() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // Fails only if the global pool was already made (by an embedding
        // program): its choice stands.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build_global();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settle() {
        std::thread::sleep(IDLE_BEFORE_LENDING * 2);
    }

    #[test]
    fn workers_splitting_at_once_never_enter_each_others_work() {
        // Each item's work holds thread-local state (as the resizer does)
        // and waits inside (a `join`). Were the pool shared, a thread
        // waiting there could take the other worker's whole job and enter
        // the state twice.
        thread_local!(static DEPTH: Cell<u32> = const { Cell::new(0) });
        let entered_twice = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let entered_twice = Arc::clone(&entered_twice);
                std::thread::spawn(move || {
                    set_share(2);
                    for _ in 0..10 {
                        split(MIN_PIXELS_TO_SPLIT * 4, |parts| {
                            assert_eq!(parts, 2);
                            let depth = DEPTH.with(|d| {
                                d.set(d.get() + 1);
                                d.get()
                            });
                            if depth > 1 {
                                entered_twice.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            }
                            let nap = || std::thread::sleep(Duration::from_millis(2));
                            rayon::join(nap, nap);
                            DEPTH.with(|d| d.set(d.get() - 1));
                        });
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("a worker");
        }
        assert_eq!(entered_twice.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[test]
    fn borrowing_takes_only_idle_permits_and_gives_them_back() {
        let cores = Cores::new(4);
        cores.acquire();
        settle();
        assert_eq!(cores.borrow(8), 3);
        assert_eq!(cores.free(), 0);
        cores.give_back(3);
        assert_eq!(cores.free(), 3);
        cores.release();
        assert_eq!(cores.free(), 4);
    }

    #[test]
    fn a_permit_just_freed_is_not_lent_until_it_has_stayed_idle() {
        let cores = Cores::new(2);
        cores.acquire();
        cores.acquire();
        cores.release();
        assert_eq!(
            cores.borrow(1),
            0,
            "its worker may be about to take it back"
        );
        settle();
        assert_eq!(cores.borrow(1), 1);
        cores.give_back(1);
        // A loan given back is still idle: the next operation may borrow it.
        assert_eq!(cores.borrow(1), 1);
    }

    #[test]
    fn a_waiting_worker_comes_before_a_borrower() {
        let cores = Cores::new(1);
        cores.acquire();
        settle();
        let waiter = {
            let cores = Arc::clone(&cores);
            std::thread::spawn(move || cores.acquire())
        };
        while cores.state.lock().map(|s| s.waiting).unwrap_or(0) == 0 {
            std::thread::yield_now();
        }
        cores.release();
        settle();
        // The permit is free, but promised to the waiter.
        let borrowed = cores.borrow(1);
        let _ = waiter.join();
        assert_eq!(borrowed, 0);
        assert_eq!(cores.free(), 0);
    }

    #[test]
    fn a_large_image_is_split_over_idle_permits_and_a_small_one_is_not() {
        let cores = Cores::new(3);
        let handle = {
            let cores = Arc::clone(&cores);
            std::thread::spawn(move || {
                enter(Arc::clone(&cores));
                cores.acquire();
                settle();
                let small = split(1000, |parts| parts);
                let large = split(48_000_000, |parts| (parts, rayon::current_num_threads()));
                let during = split(48_000_000, |_| cores.free());
                cores.release();
                (small, large, during)
            })
        };
        let (small, large, during) = handle.join().unwrap_or_default();
        assert_eq!(small, 1);
        assert_eq!(large, (3, 3));
        assert_eq!(during, 0, "borrowed permits are held while the work runs");
        assert_eq!(cores.free(), 3, "and given back after");
    }

    #[test]
    fn a_thread_outside_any_run_uses_its_share() {
        let parts = std::thread::spawn(|| {
            let alone = split(48_000_000, |parts| parts);
            set_share(2);
            (alone, split(48_000_000, |parts| parts))
        })
        .join()
        .unwrap_or_default();
        assert_eq!(parts, (1, 2));
    }
}
